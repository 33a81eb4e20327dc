//! The audit trail: one `info` line, target [`AUDIT_TARGET`], for every call of an RPC
//! that [`RPC_RULES`] marks as a write ([`Access::Write`]), refused calls included.
//!
//! A line names who called (`identity`, the certificate's `serial`), what (`method`,
//! and `object`: the request field the rule names as its target), when (the line's
//! time, at the end of the call, and `duration_ms`) and the `result` (the gRPC code, or
//! `Cancelled` when the caller went away before a status was sent). [`RoleService`]
//! writes them; for now they go to the process's log only (see `docs/security.md`).
//!
//! [`RPC_RULES`]: super::RPC_RULES
//! [`Access::Write`]: super::Access::Write
//! [`RoleService`]: super::RoleService

use std::collections::VecDeque;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use http_body::{Body, Frame};
use prost::bytes::{Buf, Bytes};
use prost::encoding::{decode_key, decode_varint, skip_field, DecodeContext, WireType};
use rustls_pki_types::CertificateDer;
use tonic::codegen::StdError;
use tonic::{Code, Status};

use super::contract;
use crate::pki::{identity_from_cert_der, serial_from_cert_der};

/// The `tracing` target of audit lines (`RUST_LOG=audit=info`).
pub const AUDIT_TARGET: &str = "audit";

/// The most of a request read to find its target (its first message); a larger first
/// message is passed on without a target in the line.
const MAX_PEEK: usize = 64 * 1024;

/// The longest target written into a line.
const MAX_OBJECT_CHARS: usize = 256;

/// Who called, as audit lines name them.
#[derive(Debug, Clone)]
pub(super) struct Caller {
    identity: String,
    serial: String,
}

impl Caller {
    /// The caller presenting `leaf` (none: `anonymous`). The handshake verifier has
    /// already checked the certificate; "?" stands for what still cannot be read.
    pub(super) fn of(leaf: Option<&CertificateDer<'_>>) -> Caller {
        match leaf {
            None => Caller {
                identity: "anonymous".to_owned(),
                serial: "-".to_owned(),
            },
            Some(der) => Caller {
                identity: identity_from_cert_der(der)
                    .map(|i| i.to_string())
                    .unwrap_or_else(|_| "?".to_owned()),
                serial: serial_from_cert_der(der).unwrap_or_else(|_| "?".to_owned()),
            },
        }
    }
}

/// One audited call: written exactly once, when its result is known or, failing that,
/// when it is dropped.
pub(super) struct AuditRecord {
    caller: Caller,
    method: String,
    object: Option<String>,
    started: Instant,
    written: bool,
}

impl AuditRecord {
    pub(super) fn new(caller: Caller, method: String, object: Option<String>) -> Self {
        AuditRecord {
            caller,
            method,
            object,
            started: Instant::now(),
            written: false,
        }
    }

    /// Writes the line with this result (`None`: no status came, the call was cut off).
    pub(super) fn finish(&mut self, code: Option<Code>) {
        if std::mem::replace(&mut self.written, true) {
            return;
        }
        let result = code.unwrap_or(Code::Cancelled);
        tracing::info!(
            target: AUDIT_TARGET,
            identity = %self.caller.identity,
            serial = %self.caller.serial,
            method = %self.method,
            // Debug-quoted: the value comes from the caller and must not forge a line.
            object = ?self.object.as_deref().unwrap_or("-"),
            result = ?result,
            duration_ms = self.started.elapsed().as_millis() as u64,
            "rpc"
        );
    }

    /// Passes `response` on, writing the line from its status: at once for a
    /// trailers-only response (refusals, most errors), else when its trailers pass.
    pub(super) fn watch<B>(
        mut self,
        response: http::Response<B>,
    ) -> http::Response<tonic::body::Body>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<StdError>,
    {
        if let Some(status) = Status::from_header_map(response.headers()) {
            self.finish(Some(status.code()));
            return response.map(tonic::body::Body::new);
        }
        response.map(|body| {
            tonic::body::Body::new(Watched {
                inner: Box::pin(body),
                record: self,
            })
        })
    }
}

impl Drop for AuditRecord {
    fn drop(&mut self) {
        self.finish(None);
    }
}

/// A response body that writes its call's audit line when the `grpc-status` trailer
/// passes (or when it ends or is dropped without one).
struct Watched<B> {
    inner: Pin<Box<B>>,
    record: AuditRecord,
}

impl<B: Body<Data = Bytes>> Body for Watched<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.get_mut();
        let polled = this.inner.as_mut().poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(trailers) = frame.trailers_ref() {
                    let code = Status::from_header_map(trailers).map(|s| s.code());
                    this.record.finish(Some(code.unwrap_or(Code::Unknown)));
                }
            }
            Poll::Ready(Some(Err(_))) => this.record.finish(None),
            Poll::Ready(None) => this.record.finish(Some(Code::Unknown)),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A request body whose first frames were read ahead (to find the target) and are
/// replayed, unchanged, before the rest.
pub(super) struct Replayed<B> {
    replay: VecDeque<Result<Frame<Bytes>, StdError>>,
    rest: Option<Pin<Box<B>>>,
}

impl<B> Body for Replayed<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<StdError>,
{
    type Data = Bytes;
    type Error = StdError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, StdError>>> {
        let this = self.get_mut();
        if let Some(frame) = this.replay.pop_front() {
            return Poll::Ready(Some(frame));
        }
        match &mut this.rest {
            Some(rest) => rest.as_mut().poll_frame(cx).map_err(Into::into),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.replay.is_empty() && self.rest.as_ref().is_none_or(|r| r.is_end_stream())
    }
}

/// What the bytes read so far hold of the first gRPC message.
enum FirstMessage<'a> {
    Complete(&'a [u8]),
    Incomplete,
    /// Compressed: not decoded here.
    Opaque,
}

fn first_message(seen: &[u8]) -> FirstMessage<'_> {
    let Some(header) = seen.get(..5) else {
        return FirstMessage::Incomplete;
    };
    if header[0] != 0 {
        return FirstMessage::Opaque;
    }
    let len = u32::from_be_bytes([header[1], header[2], header[3], header[4]]) as usize;
    match seen.get(5..5 + len) {
        Some(message) => FirstMessage::Complete(message),
        None => FirstMessage::Incomplete,
    }
}

/// Reads `body` up to the end of its first message (at most [`MAX_PEEK`] bytes, as the
/// server would read it anyway) and returns the string at `target` in it, if the rule
/// names one, with the body to pass on.
pub(super) async fn read_target<B>(
    method: &str,
    target: Option<&str>,
    body: B,
) -> (Option<String>, Replayed<B>)
where
    B: Body<Data = Bytes>,
    B::Error: Into<StdError>,
{
    let mut rest = Box::pin(body);
    let mut replay = VecDeque::new();
    let Some(numbers) = target.and_then(|t| contract::string_field_numbers(method, t)) else {
        return (
            None,
            Replayed {
                replay,
                rest: Some(rest),
            },
        );
    };
    let mut seen: Vec<u8> = Vec::new();
    let mut ended = false;
    let object = loop {
        match first_message(&seen) {
            FirstMessage::Complete(message) => break string_at(message, &numbers),
            FirstMessage::Opaque => break None,
            FirstMessage::Incomplete if seen.len() > MAX_PEEK => break None,
            FirstMessage::Incomplete => {}
        }
        match std::future::poll_fn(|cx| rest.as_mut().poll_frame(cx)).await {
            Some(Ok(frame)) => {
                let last = frame.is_trailers();
                if let Some(data) = frame.data_ref() {
                    seen.extend_from_slice(data);
                }
                replay.push_back(Ok(frame));
                if last {
                    ended = true;
                    break None;
                }
            }
            Some(Err(error)) => {
                replay.push_back(Err(error.into()));
                ended = true;
                break None;
            }
            None => {
                ended = true;
                break None;
            }
        }
    };
    let object = object.map(|o| o.chars().take(MAX_OBJECT_CHARS).collect());
    (
        object,
        Replayed {
            replay,
            rest: (!ended).then_some(rest),
        },
    )
}

/// The string at field `numbers[0]`, then `numbers[1]` inside it, …, of a protobuf
/// `message` (the last occurrence, as a decoder would keep); `None` if absent or
/// malformed.
fn string_at(message: &[u8], numbers: &[u32]) -> Option<String> {
    let (first, inner) = numbers.split_first()?;
    let mut buf = message;
    let mut found: Option<&[u8]> = None;
    while buf.has_remaining() {
        let (tag, wire_type) = decode_key(&mut buf).ok()?;
        if tag == *first && wire_type == WireType::LengthDelimited {
            let len = usize::try_from(decode_varint(&mut buf).ok()?).ok()?;
            let value = buf.get(..len)?;
            found = Some(value);
            buf.advance(len);
        } else {
            skip_field(wire_type, tag, &mut buf, DecodeContext::default()).ok()?;
        }
    }
    let value = found?;
    if inner.is_empty() {
        String::from_utf8(value.to_vec()).ok()
    } else {
        string_at(value, inner)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::pb;

    fn framed(message: &impl Message) -> Vec<u8> {
        let bytes = message.encode_to_vec();
        let mut out = vec![0];
        out.extend_from_slice(&(bytes.len() as u32).to_be_bytes());
        out.extend_from_slice(&bytes);
        out
    }

    #[test]
    fn targets_are_found_in_nested_fields() {
        let request = pb::CreateZonesRequest {
            spec: Some(pb::ZoneSpec {
                alias: Some("web-1".into()),
                image: "base@1".into(),
                ..Default::default()
            }),
            count: 3,
            idempotency_key: "k".into(),
            dry_run: false,
        };
        let bytes = request.encode_to_vec();
        assert_eq!(string_at(&bytes, &[1, 2]).as_deref(), Some("web-1"));
        assert_eq!(string_at(&bytes, &[3]).as_deref(), Some("k"));
        assert_eq!(string_at(&bytes, &[1, 1]), None);
        assert_eq!(string_at(&[0xff, 0xff], &[1]), None);
    }

    #[tokio::test]
    async fn the_body_is_passed_on_unchanged() {
        let request = pb::ZoneRef {
            zone: "0b7c3a4e-1d2f-4c55-9a8e-3f2b1c0d9e8f".into(),
        };
        let wire = framed(&request);
        // Split mid-header and mid-message, as the network may.
        let chunks: Vec<Result<Frame<Bytes>, std::convert::Infallible>> = vec![
            Ok(Frame::data(Bytes::copy_from_slice(&wire[..3]))),
            Ok(Frame::data(Bytes::copy_from_slice(&wire[3..10]))),
            Ok(Frame::data(Bytes::copy_from_slice(&wire[10..]))),
        ];
        let body = frames_body(chunks);
        let (object, mut replayed) =
            read_target("/zonefleet.v1.Operator/DeleteZone", Some("zone"), body).await;
        assert_eq!(object.as_deref(), Some(request.zone.as_str()));
        let mut again = Vec::new();
        while let Some(frame) =
            std::future::poll_fn(|cx| Pin::new(&mut replayed).poll_frame(cx)).await
        {
            again.extend_from_slice(frame.unwrap().data_ref().unwrap());
        }
        assert_eq!(again, wire);
    }

    /// A body yielding `frames` in order.
    fn frames_body(
        frames: Vec<Result<Frame<Bytes>, std::convert::Infallible>>,
    ) -> impl Body<Data = Bytes, Error = std::convert::Infallible> {
        struct Frames(VecDeque<Result<Frame<Bytes>, std::convert::Infallible>>);
        impl Body for Frames {
            type Data = Bytes;
            type Error = std::convert::Infallible;
            fn poll_frame(
                self: Pin<&mut Self>,
                _: &mut Context<'_>,
            ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
                Poll::Ready(self.get_mut().0.pop_front())
            }
        }
        Frames(frames.into())
    }
}
