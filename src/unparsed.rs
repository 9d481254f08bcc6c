//! Answers for what hyper refuses before a request exists: a malformed request line (a
//! raw space in the target), a malformed header or two `Content-Length`s that differ
//! (400), a target over the 65,534 bytes the `http` crate can hold (414), headers over
//! hyper's buffer (431).
//!
//! hyper answers those itself, with a bare status, no body and no hook to change it. So
//! the connection's writes pass through [`Answering`]: when hyper's bare answer goes
//! out (recognised exactly: a status of 400, 414 or 431 with only `content-length: 0`,
//! `date` and `connection` headers, alone in one write), the handler's AWS-shaped answer
//! with a request id replaces it, and the handler logs it. Every other write passes
//! untouched; scimguard's own answers always carry `x-scimguard-request-id`, so they
//! can never look like hyper's.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{ready, Context, Poll};

use http::StatusCode;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use crate::exchange::{RequestId, REQUEST_ID_HEADER};
use crate::scim::error::ScimError;
use crate::server::Handler;

/// A connection whose hyper-made refusals are replaced by the handler's answers.
pub struct Answering<IO, H> {
    io: IO,
    handler: Arc<H>,
    state: State,
}

enum State {
    /// Writes pass through.
    Passing,
    /// hyper's refusal was swallowed; these bytes go out instead.
    Replacing { answer: Vec<u8>, written: usize },
    /// The replacement is out; hyper closes the connection next.
    Done,
}

impl<IO, H> Answering<IO, H> {
    pub fn new(io: IO, handler: Arc<H>) -> Self {
        Answering {
            io,
            handler,
            state: State::Passing,
        }
    }
}

impl<IO: AsyncRead + Unpin, H> AsyncRead for Answering<IO, H> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_read(cx, buf)
    }
}

impl<IO: AsyncWrite + Unpin, H: Handler> AsyncWrite for Answering<IO, H> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        loop {
            match &mut this.state {
                State::Passing => {
                    let answer = hyper_refusal(buf).and_then(|s| this.handler.unparsed(s));
                    match answer {
                        Some(answer) => this.state = State::Replacing { answer, written: 0 },
                        None => return Pin::new(&mut this.io).poll_write(cx, buf),
                    }
                }
                State::Replacing { answer, written } => {
                    while *written < answer.len() {
                        let n = ready!(Pin::new(&mut this.io).poll_write(cx, &answer[*written..]))?;
                        if n == 0 {
                            return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                        }
                        *written += n;
                    }
                    this.state = State::Done;
                }
                // hyper believes its own answer went out.
                State::Done => return Poll::Ready(Ok(buf.len())),
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// The status of hyper's automatic refusal, when `write` is exactly one: a whole
/// HTTP/1.1 head, no body, status 400, 414 or 431, and no header but hyper's own.
fn hyper_refusal(write: &[u8]) -> Option<StatusCode> {
    let mut headers = [httparse::EMPTY_HEADER; 4];
    let mut head = httparse::Response::new(&mut headers);
    match head.parse(write) {
        Ok(httparse::Status::Complete(len)) if len == write.len() => {}
        _ => return None,
    }
    let status = StatusCode::from_u16(head.code?).ok()?;
    let refusal = [
        StatusCode::BAD_REQUEST,
        StatusCode::URI_TOO_LONG,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    ];
    let hypers_own = head.headers.iter().all(|h| {
        (h.name.eq_ignore_ascii_case("content-length") && h.value == b"0")
            || h.name.eq_ignore_ascii_case("date")
            || h.name.eq_ignore_ascii_case("connection")
    });
    (refusal.contains(&status) && hypers_own).then_some(status)
}

/// What scimguard says for each of hyper's refusals.
pub fn detail(status: StatusCode) -> String {
    let what = match status {
        StatusCode::URI_TOO_LONG => format!(
            "the request target is longer than the 65,534 bytes an HTTP request can carry here (scimguard's own limit is {} bytes). Shorten the query (e.g. a filter with fewer terms) or check the IdP's SCIM endpoint URL",
            crate::target::MAX_TARGET_BYTES
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => {
            "the request headers are too large to read. Send fewer or shorter headers".to_owned()
        }
        _ => "the request could not be read as HTTP/1.1: its request line or a header is malformed (for example a raw space in the request target, or two Content-Length headers that differ). Percent-encode the target (%20 for a space, as in ?filter=userName%20eq%20%22…%22) and send one Content-Length".to_owned(),
    };
    format!("scimguard: {what}.")
}

/// The whole HTTP/1.1 answer: an AWS-shaped SCIM error, the request id, the outcome
/// `error`, and `connection: close` (hyper closes the connection after a refusal).
pub fn http1_answer(status: StatusCode, id: &RequestId, error: &ScimError) -> Vec<u8> {
    let body = error.to_json();
    let mut answer = format!(
        "HTTP/1.1 {} {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n{REQUEST_ID_HEADER}: {id}\r\n{}: error\r\nconnection: close\r\n\r\n",
        status.as_str(),
        status.canonical_reason().unwrap_or(""),
        body.len(),
        crate::pipeline::VERDICT_HEADER.as_str(),
    )
    .into_bytes();
    answer.extend_from_slice(&body);
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_hypers_bare_refusals_are_recognised() {
        let date = "date: Mon, 07 Dec 2026 02:50:00 GMT\r\n";
        for (head, status) in [
            (format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n{date}\r\n"), Some(400)),
            (format!("HTTP/1.1 414 URI Too Long\r\ncontent-length: 0\r\n{date}\r\n"), Some(414)),
            (
                format!("HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\n{date}\r\n"),
                Some(431),
            ),
            // Ours, with a body, another status, a body after the head, or a part.
            (format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nx-scimguard-request-id: 1\r\n{date}\r\n"), None),
            (format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n{date}\r\n"), None),
            (format!("HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n{date}\r\n"), None),
            (format!("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n{date}\r\n{{}}"), None),
            ("HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n".to_owned(), None),
            ("{\"detail\":\"HTTP/1.1 400\"}".to_owned(), None),
        ] {
            assert_eq!(
                hyper_refusal(head.as_bytes()).map(|s| s.as_u16()),
                status,
                "{head:?}"
            );
        }
    }

    #[test]
    fn the_answer_is_whole_http_with_an_aws_shaped_body() {
        let id = RequestId::new();
        let error = ScimError::new(400, detail(StatusCode::BAD_REQUEST));
        let answer = http1_answer(StatusCode::BAD_REQUEST, &id, &error);
        let mut headers = [httparse::EMPTY_HEADER; 8];
        let mut head = httparse::Response::new(&mut headers);
        let httparse::Status::Complete(len) = head.parse(&answer).unwrap() else {
            panic!("a whole head")
        };
        assert_eq!(head.code, Some(400));
        let header = |name: &str| {
            head.headers
                .iter()
                .find(|h| h.name == name)
                .map(|h| std::str::from_utf8(h.value).unwrap().to_owned())
        };
        assert_eq!(header("x-scimguard-request-id"), Some(id.to_string()));
        assert_eq!(header("x-scimguard-verdict").as_deref(), Some("error"));
        let body: serde_json::Value = serde_json::from_slice(&answer[len..]).unwrap();
        assert_eq!(
            header("content-length"),
            Some((answer.len() - len).to_string())
        );
        assert_eq!(body["status"], "400");
        assert!(body["detail"].as_str().unwrap().contains("raw space"));
    }
}
