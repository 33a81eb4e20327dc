//! Runs the assembled device program in a tiny interpreter of the opcodes it uses,
//! so the allow list is checked without a kernel (the privileged tests check it
//! with one).

use super::bpf::*;
use crate::cgroup::{DeviceAccess, DeviceKind, DeviceRule};

/// Evaluates `prog` for a device access; panics on an opcode it does not use.
fn run(prog: &[Insn], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
    let ctx = [(access << 16) | kind, major, minor];
    let mut r = [0u64; 11];
    let mut pc = 0usize;
    loop {
        let i = prog[pc];
        let (dst, src) = ((i.regs & 0xf) as usize, (i.regs >> 4) as usize);
        pc += 1;
        match i.code {
            LDX_W => {
                assert_eq!(src, 1, "loads only from the context");
                r[dst] = u64::from(ctx[i.off as usize / 4]);
            }
            AND32_K => r[dst] = u64::from((r[dst] as u32) & (i.imm as u32)),
            RSH32_K => r[dst] = u64::from((r[dst] as u32) >> i.imm),
            MOV64_X => r[dst] = r[src],
            MOV64_K => r[dst] = i.imm as i64 as u64,
            JNE_K => {
                if r[dst] != i.imm as i64 as u64 {
                    pc += i.off as usize;
                }
            }
            EXIT => return r[0],
            op => panic!("unexpected opcode {op:#x}"),
        }
    }
}

const CHAR: u32 = 2;
const BLOCK: u32 = 1;
const READ: u32 = 2;
const WRITE: u32 = 4;
const MKNOD: u32 = 1;

#[test]
fn zone_defaults_allow_exactly_the_list() {
    let p = device_program(&DeviceRule::zone_defaults());
    for (maj, min) in [
        (1, 3),
        (1, 5),
        (1, 7),
        (1, 8),
        (1, 9),
        (5, 0),
        (5, 2),
        (136, 0),
        (136, 77),
    ] {
        assert_eq!(run(&p, CHAR, READ | WRITE, maj, min), 1, "c {maj}:{min}");
        assert_eq!(run(&p, CHAR, MKNOD, maj, min), 1, "mknod c {maj}:{min}");
    }
    // kmsg, mem, console, /dev/vda, loop0, and a block device with an allowed number.
    for (kind, maj, min) in [
        (CHAR, 1, 11),
        (CHAR, 1, 1),
        (CHAR, 5, 1),
        (BLOCK, 254, 0),
        (BLOCK, 7, 0),
        (BLOCK, 1, 3),
    ] {
        assert_eq!(run(&p, kind, READ, maj, min), 0, "{kind} {maj}:{min}");
    }
}

#[test]
fn access_subset_and_wildcards() {
    let ro = DeviceRule {
        kind: DeviceKind::Block,
        major: Some(8),
        minor: None,
        access: DeviceAccess {
            read: true,
            write: false,
            mknod: false,
        },
    };
    let any = DeviceRule {
        kind: DeviceKind::All,
        major: Some(10),
        minor: Some(200),
        access: DeviceAccess::RWM,
    };
    let p = device_program(&[ro, any]);
    assert_eq!(run(&p, BLOCK, READ, 8, 16), 1);
    assert_eq!(run(&p, BLOCK, READ | WRITE, 8, 16), 0);
    assert_eq!(run(&p, BLOCK, MKNOD, 8, 16), 0);
    assert_eq!(run(&p, CHAR, READ, 8, 16), 0);
    assert_eq!(run(&p, CHAR, WRITE, 10, 200), 1);
    assert_eq!(run(&p, BLOCK, WRITE, 10, 200), 1);
    assert_eq!(
        run(&device_program(&[]), CHAR, READ, 1, 3),
        0,
        "no rule: deny all"
    );
}

#[test]
fn every_jump_lands_inside_and_program_ends_in_exit() {
    let p = device_program(&DeviceRule::zone_defaults());
    assert_eq!(p.last().unwrap().code, EXIT);
    for (i, ins) in p.iter().enumerate() {
        if ins.code == JNE_K {
            let target = i + 1 + ins.off as usize;
            assert!(target < p.len(), "insn {i} jumps to {target}");
        }
    }
}
