//! Bodies signed chunk by chunk (`STREAMING-AWS4-HMAC-SHA256-PAYLOAD`, the aws-chunked
//! encoding some SDKs use for uploads over plain HTTP): every chunk carries a signature
//! chained to the previous one, starting from the request's own signature. The caller's chain
//! is checked chunk by chunk as the body streams through, and each chunk goes upstream with a
//! signature in Shoal's chain (seeded by the re-signed request), so the upstream can check the
//! body without ever seeing the caller's key. One chunk is held at a time; chunk sizes keep
//! their exact text, so the encoded length (`content-length`) does not change.

use axum::body::{Body, Bytes};
use bytes::{Buf as _, BytesMut};
use futures_util::StreamExt as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq as _;

/// `hex(SHA-256(""))`, part of every chunk's string to sign.
const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";
/// Largest chunk held (twice, while it is re-framed): S3 clients use 8 KiB to 1 MiB.
pub(crate) const MAX_CHUNK: usize = 8 << 20;
/// Longest chunk header line (`<hex size>;chunk-signature=<64 hex>`), with room to spare.
const MAX_HEADER: usize = 256;

/// One signature chain: a signing key with its request's time and scope, and the last
/// signature (the request's own to begin with).
#[derive(Clone)]
pub(crate) struct Chain {
    pub key: Vec<u8>,
    pub amz_date: String,
    /// `yyyymmdd/region/s3/aws4_request`.
    pub scope: String,
    pub previous: String,
}

impl Chain {
    /// The next chunk's signature; it becomes the previous one.
    fn next(&mut self, data: &[u8]) -> String {
        let string_to_sign = format!(
            "AWS4-HMAC-SHA256-PAYLOAD\n{}\n{}\n{}\n{EMPTY_SHA256}\n{}",
            self.amz_date,
            self.scope,
            self.previous,
            hex::encode(Sha256::digest(data))
        );
        self.previous =
            aws_sigv4::sign::v4::calculate_signature(&self.key, string_to_sign.as_bytes());
        self.previous.clone()
    }
}

/// Why the caller's chunked body was cut off (the upstream then sees a truncated body and
/// stores nothing).
#[derive(Debug, thiserror::Error)]
pub(crate) enum ChunkError {
    #[error("aws-chunked body: {0}")]
    Malformed(String),
    #[error("aws-chunked body: the signature of chunk {0} does not match")]
    Signature(usize),
    #[error("aws-chunked body: {0}")]
    Read(String),
}

/// The caller's aws-chunked body with each chunk's signature checked against `caller` and
/// replaced with the next one of `upstream`.
pub(crate) fn resign(body: Body, caller: Chain, upstream: Chain) -> Body {
    let state = Resigner {
        input: body.into_data_stream(),
        buf: BytesMut::new(),
        caller,
        upstream,
        chunks: 0,
        done: false,
    };
    Body::from_stream(futures_util::stream::unfold(state, |mut s| async move {
        let out = s.next_chunk().await?;
        Some((out, s))
    }))
}

struct Resigner {
    input: axum::body::BodyDataStream,
    buf: BytesMut,
    caller: Chain,
    upstream: Chain,
    chunks: usize,
    done: bool,
}

impl Resigner {
    /// The next re-signed chunk, an error (which ends the body), or `None` after the last.
    async fn next_chunk(&mut self) -> Option<Result<Bytes, ChunkError>> {
        if self.done {
            return None;
        }
        let result = self.read_chunk().await;
        if result.is_err() {
            self.done = true;
        }
        Some(result)
    }

    async fn fill(&mut self, at_least: usize) -> Result<(), ChunkError> {
        while self.buf.len() < at_least {
            match self.input.next().await {
                Some(Ok(data)) => self.buf.extend_from_slice(&data),
                Some(Err(e)) => return Err(ChunkError::Read(e.to_string())),
                None => {
                    return Err(ChunkError::Malformed(
                        "the body ended inside a chunk".into(),
                    ));
                }
            }
        }
        Ok(())
    }

    async fn read_chunk(&mut self) -> Result<Bytes, ChunkError> {
        // The header line: `<hex size>;chunk-signature=<signature>\r\n`.
        let line_end = loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            if self.buf.len() > MAX_HEADER {
                return Err(ChunkError::Malformed(
                    "a chunk header line is too long".into(),
                ));
            }
            let want = self.buf.len() + 1;
            self.fill(want).await?;
        };
        let line = std::str::from_utf8(&self.buf[..line_end])
            .map_err(|_| ChunkError::Malformed("a chunk header is not ASCII".into()))?;
        let (size_text, signature) = line
            .split_once(";chunk-signature=")
            .ok_or_else(|| ChunkError::Malformed("a chunk header has no chunk-signature".into()))?;
        let size = usize::from_str_radix(size_text, 16)
            .ok()
            .filter(|s| *s <= MAX_CHUNK)
            .ok_or_else(|| {
                ChunkError::Malformed(format!(
                    "chunk size must be hexadecimal and at most {MAX_CHUNK} bytes"
                ))
            })?;
        let (size_text, signature) = (size_text.to_string(), signature.to_string());
        // Data, then CRLF; the last (empty) chunk is followed by one more CRLF.
        let trailer = if size == 0 { 2 } else { 0 };
        let total = line_end + 2 + size + 2 + trailer;
        self.fill(total).await?;
        let mut frame = self.buf.split_to(total);
        frame.advance(line_end + 2);
        if !frame.ends_with(if size == 0 { b"\r\n\r\n" } else { b"\r\n" }) {
            return Err(ChunkError::Malformed(
                "a chunk's data is not followed by CRLF".into(),
            ));
        }
        let data = &frame[..size];
        self.chunks += 1;
        let expected = self.caller.next(data);
        if !bool::from(expected.as_bytes().ct_eq(signature.as_bytes())) {
            return Err(ChunkError::Signature(self.chunks));
        }
        let ours = self.upstream.next(data);
        let mut out = BytesMut::with_capacity(total);
        out.extend_from_slice(format!("{size_text};chunk-signature={ours}\r\n").as_bytes());
        out.extend_from_slice(&frame);
        if size == 0 {
            self.done = true;
            if !self.buf.is_empty() {
                return Err(ChunkError::Malformed(
                    "data after the final chunk (trailers are not accepted)".into(),
                ));
            }
        }
        Ok(out.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// AWS's "Example Calculations" for a chunked upload (S3 API reference, "Signature
    /// Calculations for the Authorization Header: Transferring Payload in Multiple Chunks"):
    /// 66,560 bytes of 'a' in chunks of 65,536 bytes, seed signature from the PUT request.
    fn aws_example_chain() -> Chain {
        let key = aws_sigv4::sign::v4::generate_signing_key(
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
            chrono::NaiveDate::from_ymd_opt(2013, 5, 24)
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .into(),
            "us-east-1",
            "s3",
        );
        Chain {
            key: key.as_ref().to_vec(),
            amz_date: "20130524T000000Z".into(),
            scope: "20130524/us-east-1/s3/aws4_request".into(),
            previous: "4f232c4386841ef735655705268965c44a0e4690baa4adea153f7db9fa80a0a9".into(),
        }
    }

    #[test]
    fn aws_chunk_signature_examples_chain() {
        let mut chain = aws_example_chain();
        assert_eq!(
            chain.next(&[b'a'; 65536]),
            "ad80c730a21e5b8d04586a2213dd63b9a0e99e0e2307b0ade35a65485a288648"
        );
        assert_eq!(
            chain.next(&[b'a'; 1024]),
            "0055627c9e194cb4542bae2aa5492e3c1575bbb81b612b7d234b86a503ef5497"
        );
        assert_eq!(
            chain.next(&[]),
            "b6c6ea8a5354eaf15b3cb7646744f4275b71ea724fed81ceb9323e279d449df9"
        );
    }

    /// `sizes` as an aws-chunked body signed in `chain`, delivered in `piece`-byte reads.
    fn encode(chain: &mut Chain, sizes: &[usize]) -> Vec<u8> {
        let mut out = Vec::new();
        for size in sizes.iter().copied().chain([0]) {
            let data = vec![b'a'; size];
            let sig = chain.next(&data);
            out.extend_from_slice(format!("{size:x};chunk-signature={sig}\r\n").as_bytes());
            out.extend_from_slice(&data);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    fn body_of(bytes: Vec<u8>, piece: usize) -> Body {
        let pieces: Vec<Result<Bytes, std::io::Error>> = bytes
            .chunks(piece)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        Body::from_stream(futures_util::stream::iter(pieces))
    }

    async fn collect(body: Body) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        let mut stream = body.into_data_stream();
        while let Some(piece) = stream.next().await {
            out.extend_from_slice(&piece.map_err(|e| e.to_string())?);
        }
        Ok(out)
    }

    fn upstream_chain() -> Chain {
        Chain {
            key: vec![7; 32],
            amz_date: "20261129T120000Z".into(),
            scope: "20261129/eu-west-1/s3/aws4_request".into(),
            previous: "1".repeat(64),
        }
    }

    #[tokio::test]
    async fn a_valid_body_is_re_signed_in_the_upstream_chain_with_the_same_length() {
        let sent = encode(&mut aws_example_chain(), &[65536, 1024]);
        for piece in [1, 7, 4096, sent.len()] {
            let out = collect(resign(
                body_of(sent.clone(), piece),
                aws_example_chain(),
                upstream_chain(),
            ))
            .await
            .unwrap();
            assert_eq!(out.len(), sent.len(), "piece {piece}");
            // Exactly what an encoder in the upstream's chain would produce.
            assert_eq!(
                out,
                encode(&mut upstream_chain(), &[65536, 1024]),
                "piece {piece}"
            );
        }
    }

    #[tokio::test]
    async fn tampered_or_malformed_bodies_end_in_an_error() {
        let good = encode(&mut aws_example_chain(), &[100, 50]);
        let mut flipped = good.clone();
        let data_at = flipped.iter().position(|b| *b == b'a').unwrap();
        flipped[data_at + 10] = b'b';
        let cut = good[..good.len() - 20].to_vec();
        let mut wrong_size = good.clone();
        wrong_size[..2].copy_from_slice(b"zz");
        let mut extra = good.clone();
        extra.extend_from_slice(b"x-amz-checksum-crc32:AAAAAA==\r\n\r\n");
        for (what, bytes, expected) in [
            ("a changed byte", flipped, "does not match"),
            ("a body cut short", cut, "ended inside a chunk"),
            ("a size that is not hex", wrong_size, "hexadecimal"),
            ("trailers", extra, "trailers are not accepted"),
            ("no header at all", vec![b'x'; 1000], "too long"),
        ] {
            let err = collect(resign(
                body_of(bytes, 64),
                aws_example_chain(),
                upstream_chain(),
            ))
            .await
            .expect_err(what);
            assert!(err.contains(expected), "{what}: {err}");
        }
    }
}
