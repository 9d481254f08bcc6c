//! Response bodies: whole buffers (scimguard's own answers, errors the explanation
//! reads) or the upstream's answer streamed as it arrives, with no size cap, so a large
//! answer costs the proxy a few buffers instead of its whole size.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::{Frame, SizeHint};

pub use crate::upstream::BoxError;

/// The proxy's response body: a whole buffer or a stream.
pub type Body = BoxBody<Bytes, BoxError>;

/// A whole buffer as a [`Body`].
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// A body that fails with `error`: a stream cut while a phase was reading it, so the
/// client sees the connection end rather than an answer that looks complete.
pub fn failed(error: BoxError) -> Body {
    struct Failed(Option<BoxError>);
    impl hyper::body::Body for Failed {
        type Data = Bytes;
        type Error = BoxError;
        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.take().map(Err))
        }
    }
    Failed(Some(error)).boxed()
}

/// A body already partly read: `first`, then the rest of the stream.
pub struct Prefixed {
    first: Option<Bytes>,
    rest: Body,
}

impl hyper::body::Body for Prefixed {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(first) = self.first.take() {
            return Poll::Ready(Some(Ok(Frame::data(first))));
        }
        Pin::new(&mut self.rest).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.first.is_none() && self.rest.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let first = self.first.as_ref().map_or(0, |b| b.len() as u64);
        let rest = self.rest.size_hint();
        let mut hint = SizeHint::new();
        hint.set_lower(rest.lower() + first);
        if let Some(upper) = rest.upper() {
            hint.set_upper(upper + first);
        }
        hint
    }
}

/// The start of a body, read up to a cap.
pub struct Head {
    /// Every byte read: the whole body when `rest` is `None`, else at least `cap`.
    pub bytes: Bytes,
    /// The body after `bytes`, still to stream; `None` when it ended within the cap.
    pub rest: Option<Body>,
}

impl Head {
    /// The body again, whole: the bytes read, then the rest as it arrives.
    pub fn into_body(self) -> Body {
        match self.rest {
            None => full(self.bytes),
            Some(rest) => Prefixed {
                first: Some(self.bytes),
                rest,
            }
            .boxed(),
        }
    }
}

/// Reads `body` until it ends or more than `cap` bytes have come; trailers are dropped
/// (an HTTP/1.1 client would not get them either).
pub async fn read_head(mut body: Body, cap: usize) -> Result<Head, BoxError> {
    let mut read = BytesMut::new();
    while read.len() <= cap {
        match body.frame().await {
            None => {
                return Ok(Head {
                    bytes: read.freeze(),
                    rest: None,
                })
            }
            Some(frame) => {
                if let Ok(data) = frame?.into_data() {
                    read.extend_from_slice(&data);
                }
            }
        }
    }
    Ok(Head {
        bytes: read.freeze(),
        rest: Some(body),
    })
}

/// What a capture keeps of a body cut at `cap` bytes: those bytes (ending on a whole
/// UTF-8 character when it is text), then a marker saying how much was left out.
/// `total` is the body's length when known (its Content-Length).
pub fn cut_for_record(bytes: &[u8], cap: usize, total: Option<u64>) -> Vec<u8> {
    let mut end = cap.min(bytes.len());
    if let Err(e) = std::str::from_utf8(&bytes[..end]) {
        // Only a character split by the cut moves it; other bytes stay as they are.
        if e.error_len().is_none() {
            end = e.valid_up_to();
        }
    }
    let left_out = match total {
        Some(total) => format!("{} more bytes", total.saturating_sub(end as u64)),
        None => "the rest (its length was not known when recorded)".to_owned(),
    };
    let mut kept = bytes[..end].to_vec();
    kept.extend_from_slice(
        format!(
            "\n[scimguard: body cut at {end} bytes (--record-body-max-bytes); {left_out} went to the client but not into this capture]"
        )
        .as_bytes(),
    );
    kept
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cut_says_how_much_was_left_out_and_keeps_characters_whole() {
        let text = "aé".repeat(10); // 'é' is two bytes
        let kept = cut_for_record(text.as_bytes(), 2, Some(30));
        let kept = String::from_utf8(kept).expect("still UTF-8");
        assert!(
            kept.starts_with("a\n[scimguard: body cut at 1 bytes"),
            "{kept}"
        );
        assert!(kept.contains("29 more bytes"), "{kept}");
        let kept = String::from_utf8(cut_for_record(b"abcdef", 3, None)).unwrap();
        assert!(kept.starts_with("abc\n"), "{kept}");
        assert!(kept.contains("length was not known"), "{kept}");
    }

    /// A body arriving in chunks of 100 bytes.
    struct Chunks(std::collections::VecDeque<Bytes>);

    impl hyper::body::Body for Chunks {
        type Data = Bytes;
        type Error = BoxError;

        fn poll_frame(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
            Poll::Ready(self.0.pop_front().map(|b| Ok(Frame::data(b))))
        }
    }

    #[tokio::test]
    async fn a_head_read_gives_the_whole_body_back() {
        let chunks = (0..10).map(|i| Bytes::from(vec![b'a' + i; 100])).collect();
        let head = read_head(Chunks(chunks).boxed(), 250).await.unwrap();
        assert_eq!(head.bytes.len(), 300);
        assert!(head.rest.is_some());
        let whole = head.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(whole.len(), 1000);
        assert_eq!(&whole[950..], &[b'j'; 50][..]);

        let head = read_head(full("short"), 250).await.unwrap();
        assert!(head.rest.is_none());
        assert_eq!(head.bytes, "short");
    }
}
