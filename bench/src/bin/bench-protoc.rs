//! Prints the path of the vendored `protoc`, for `bench/run` to hand to etcd-client's
//! build script as `PROTOC` (a clean machine then needs no protobuf compiler).

fn main() -> std::process::ExitCode {
    match protoc_bin_vendored::protoc_bin_path() {
        Ok(path) => {
            println!("{}", path.display());
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("bench-protoc: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
