//! gatehouse patch: a strict decoder of chunked request bodies, replacing chunked_transfer's
//! `Decoder`, which grew the chunk-size line without bound (a client sending hex digits with no
//! end could take any amount of memory), accepted sizes like `+a` or ` a `, and read trailers
//! without limit. Here a size line is at most 1 KiB (hex digits, then optional extensions), the
//! trailer section at most 8 KiB, and any framing error is `InvalidData`.
//!
//! The size line is parsed by `httparse::parse_chunk_size`, which takes 1 to 16 hex digits
//! (more, even leading zeros, is an error, so a size never overflows), then optional spaces or
//! tabs, then optional extensions after a `;`. It is laxer than this decoder in three ways,
//! where our rules are kept: it reads a line without digits (empty, blank, or only extensions
//! such as `;x`) as size 0, so we require the line to start with a hex digit; it lets an
//! extension hold a bare LF, so lines are cut here, at the first CRLF, refusing a lone CR or
//! LF; and it works on whatever buffer it is given, so the 1 KiB bound is ours. Extensions may
//! hold any other byte, with either parser; they are ignored.

use std::convert::TryFrom;
use std::io::{self, ErrorKind, Read};

use httparse::Status;

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
    io::Error::new(
        ErrorKind::InvalidData,
        format!("invalid chunked body: {what}"),
    )
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

    /// One line up to CRLF, at most `max` bytes before it, each passed to `each`; returns its
    /// length. A CR not followed by LF, or an LF without CR, is an error.
    fn line(&mut self, max: usize, mut each: impl FnMut(u8)) -> io::Result<usize> {
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
                    each(byte);
                    len += 1;
                }
            }
        }
    }

    fn chunk_size(&mut self) -> io::Result<u64> {
        let mut line = Vec::new();
        self.line(MAX_LINE, |byte| line.push(byte))?;
        // httparse reads an empty size as 0 (see the module's doc).
        if !line.first().is_some_and(u8::is_ascii_hexdigit) {
            return Err(invalid("chunk size is not hexadecimal"));
        }
        line.extend_from_slice(b"\r\n");
        match httparse::parse_chunk_size(&line) {
            Ok(Status::Complete((end, size))) if end == line.len() => Ok(size),
            _ => Err(invalid("malformed chunk-size line")),
        }
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
                    self.state = if left == 0 {
                        State::DataEnd
                    } else {
                        State::Data(left)
                    };
                    return Ok(read);
                }
                State::DataEnd => {
                    if self.line(0, |_| ())? != 0 {
                        return Err(invalid("chunk data longer than its size"));
                    }
                    self.state = State::Size;
                }
                State::Trailers => {
                    let mut total = 0;
                    loop {
                        let len = self.line(MAX_LINE, |_| ())?;
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
        assert_eq!(
            decode(b"A;ext=1\r\n0123456789\r\n1\r\nx\r\n0\r\nT: v\r\n\r\n").unwrap(),
            b"0123456789x"
        );
        assert_eq!(decode(b"0\r\n\r\n").unwrap(), b"");
    }

    #[test]
    fn whitespace_before_extensions_is_allowed() {
        assert_eq!(decode(b"3 \r\nabc\r\n0\t;x\r\n\r\n").unwrap(), b"abc");
        assert_eq!(
            decode(b"3\t; a=\"b c\"\r\nabc\r\n0\r\n\r\n").unwrap(),
            b"abc"
        );
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
            // What httparse alone would read as size 0: no digits.
            b" \r\n\r\n",
            b";x\r\n\r\n",
            // An LF inside an extension, which httparse alone would take.
            b"3;a\nb\r\nabc\r\n0\r\n\r\n",
            // A lone CR.
            b"3;a\rb\r\nabc\r\n0\r\n\r\n",
            // Something after the size that is not an extension.
            b"3 x\r\nabc\r\n0\r\n\r\n",
            b"3 4\r\nabc\r\n0\r\n\r\n",
            // More than 16 hex digits, even when they are leading zeros.
            b"00000000000000003\r\nabc\r\n0\r\n\r\n",
        ] {
            let error = decode(raw).unwrap_err();
            assert_eq!(
                error.kind(),
                ErrorKind::InvalidData,
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn sixteen_hex_digits_are_a_size() {
        let mut decoder = ChunkedDecoder::new(&b"0000000000000003\r\nabc\r\n0\r\n\r\n"[..]);
        let mut out = Vec::new();
        decoder.read_to_end(&mut out).unwrap();
        assert_eq!(out, b"abc");
        // The largest size is read, and the body then ends early.
        let mut decoder = ChunkedDecoder::new(&b"ffffffffffffffff\r\nabc"[..]);
        let error = decoder.read_to_end(&mut Vec::new()).unwrap_err();
        assert_eq!(error.kind(), ErrorKind::UnexpectedEof);
    }

    #[test]
    fn a_size_line_of_1_kib_is_read_and_a_longer_one_refused() {
        let extension = ";".repeat(1023);
        let fits = format!("3{extension}\r\nabc\r\n0\r\n\r\n");
        assert_eq!(decode(fits.as_bytes()).unwrap(), b"abc");
        let over = format!("3{extension};\r\nabc\r\n0\r\n\r\n");
        assert_eq!(
            decode(over.as_bytes()).unwrap_err().kind(),
            ErrorKind::InvalidData
        );
    }

    #[test]
    fn trailers_over_8_kib_are_refused() {
        let line = format!("T: {}\r\n", "v".repeat(1000));
        let fits = format!("0\r\n{}\r\n", line.repeat(8));
        assert_eq!(decode(fits.as_bytes()).unwrap(), b"");
        let over = format!("0\r\n{}\r\n", line.repeat(9));
        assert_eq!(
            decode(over.as_bytes()).unwrap_err().kind(),
            ErrorKind::InvalidData
        );
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
        assert_eq!(
            decode(b"5\r\nab").unwrap_err().kind(),
            ErrorKind::UnexpectedEof
        );
    }
}
