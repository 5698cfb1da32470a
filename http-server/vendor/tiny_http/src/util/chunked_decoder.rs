// gatehouse patch: a strict decoder of chunked request bodies, replacing chunked_transfer's
// `Decoder`, which grew the chunk-size line without bound (a client sending hex digits with no
// end could take any amount of memory), accepted sizes like `+a` or ` a `, and read trailers
// without limit. Here a size line is at most 1 KiB (hex digits, then optional extensions), the
// trailer section at most 8 KiB, and any framing error is `InvalidData`.

use std::convert::TryFrom;
use std::io::{self, ErrorKind, Read};

const MAX_LINE: usize = 1024;
const MAX_TRAILERS: usize = 8 * 1024;

enum State {
    /// Before a chunk-size line.
    Size,
    /// Inside a chunk's data, this many bytes left.
    Data(u64),
    /// After a chunk's data, before its CRLF.
    DataEnd,
    /// The last chunk was read; the trailer section and the final CRLF are next.
    Trailers,
    Done,
}

/// Decodes a chunked body read from `inner`.
pub struct ChunkedDecoder<R> {
    inner: R,
    state: State,
}

fn invalid(what: &str) -> io::Error {
    io::Error::new(ErrorKind::InvalidData, format!("invalid chunked body: {what}"))
}

impl<R: Read> ChunkedDecoder<R> {
    pub fn new(inner: R) -> Self {
        ChunkedDecoder {
            inner,
            state: State::Size,
        }
    }

    fn byte(&mut self) -> io::Result<u8> {
        let mut byte = [0u8; 1];
        loop {
            match self.inner.read(&mut byte) {
                Ok(0) => {
                    return Err(io::Error::new(
                        ErrorKind::UnexpectedEof,
                        "the chunked body ended early",
                    ))
                }
                Ok(_) => return Ok(byte[0]),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// One line up to CRLF, at most `max` bytes before it; returns its length.
    fn line(&mut self, max: usize, mut each: impl FnMut(usize, u8) -> io::Result<()>) -> io::Result<usize> {
        let mut len = 0;
        loop {
            match self.byte()? {
                b'\r' => {
                    return if self.byte()? == b'\n' {
                        Ok(len)
                    } else {
                        Err(invalid("CR without LF"))
                    }
                }
                b'\n' => return Err(invalid("LF without CR")),
                byte => {
                    if len == max {
                        return Err(invalid("line too long"));
                    }
                    each(len, byte)?;
                    len += 1;
                }
            }
        }
    }

    fn chunk_size(&mut self) -> io::Result<u64> {
        let mut size: u64 = 0;
        let mut digits = 0;
        let mut in_extensions = false;
        self.line(MAX_LINE, |_, byte| {
            if in_extensions {
                return Ok(());
            }
            match (byte as char).to_digit(16) {
                Some(digit) => {
                    digits += 1;
                    size = size
                        .checked_mul(16)
                        .and_then(|s| s.checked_add(u64::from(digit)))
                        .ok_or_else(|| invalid("chunk size overflows"))?;
                    Ok(())
                }
                None if byte == b';' || byte == b' ' || byte == b'\t' => {
                    in_extensions = true;
                    Ok(())
                }
                None => Err(invalid("chunk size is not hexadecimal")),
            }
        })?;
        if digits == 0 {
            return Err(invalid("empty chunk size"));
        }
        Ok(size)
    }
}

impl<R: Read> Read for ChunkedDecoder<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            match self.state {
                State::Size => {
                    let size = self.chunk_size()?;
                    self.state = if size == 0 {
                        State::Trailers
                    } else {
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                    let read = self.inner.read(&mut buf[..want])?;
                    if read == 0 {
                        return Err(io::Error::new(
                            ErrorKind::UnexpectedEof,
                            "the chunked body ended early",
                        ));
                    }
                    let left = left - read as u64;
                    self.state = if left == 0 { State::DataEnd } else { State::Data(left) };
                    return Ok(read);
                }
                State::DataEnd => {
                    if self.line(0, |_, _| Ok(()))? != 0 {
                        return Err(invalid("chunk data longer than its size"));
                    }
                    self.state = State::Size;
                }
                State::Trailers => {
                    let mut total = 0;
                    loop {
                        let len = self.line(MAX_LINE, |_, _| Ok(()))?;
                        if len == 0 {
                            break;
                        }
                        total += len;
                        if total > MAX_TRAILERS {
                            return Err(invalid("trailers too long"));
                        }
                    }
                    self.state = State::Done;
                }
                State::Done => return Ok(0),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ChunkedDecoder;
    use std::io::{ErrorKind, Read};

    fn decode(raw: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        ChunkedDecoder::new(raw).read_to_end(&mut out).map(|_| out)
    }

    #[test]
    fn valid_bodies_decode() {
        assert_eq!(decode(b"3\r\nabc\r\n0\r\n\r\n").unwrap(), b"abc");
        assert_eq!(decode(b"A;ext=1\r\n0123456789\r\n1\r\nx\r\n0\r\nT: v\r\n\r\n").unwrap(), b"0123456789x");
        assert_eq!(decode(b"0\r\n\r\n").unwrap(), b"");
    }

    #[test]
    fn bad_framing_is_invalid_data() {
        for raw in [
            &b"+3\r\nabc\r\n0\r\n\r\n"[..],
            b" 3\r\nabc\r\n0\r\n\r\n",
            b"\r\nabc\r\n0\r\n\r\n",
            b"3\r\nabcd\r\n0\r\n\r\n",
            b"3\nabc\r\n0\r\n\r\n",
            b"ffffffffffffffffff\r\n",
        ] {
            let error = decode(raw).unwrap_err();
            assert_eq!(error.kind(), ErrorKind::InvalidData, "{:?}", String::from_utf8_lossy(raw));
        }
    }

    #[test]
    fn an_endless_size_line_is_refused_after_1_kib() {
        let endless = std::io::repeat(b'1');
        let mut decoder = ChunkedDecoder::new(endless);
        let error = decoder.read(&mut [0u8; 16]).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::InvalidData);
    }

    #[test]
    fn a_body_cut_short_is_unexpected_eof() {
        assert_eq!(decode(b"5\r\nab").unwrap_err().kind(), ErrorKind::UnexpectedEof);
    }
}
