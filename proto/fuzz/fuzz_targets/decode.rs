//! Fuzz target: the decoder and the blocking reader must never panic on any bytes, and anything
//! they accept must re-encode to exactly the bytes it was decoded from.

#![no_main]

use std::io::Cursor;

use libfuzzer_sys::fuzz_target;
use proto::{
    EncodeError, Frame, Message, ReadError, Request, Response, decode_with_limit, read_frame,
};

/// Small enough that the fuzzer also reaches the frame-length check, large enough for bodies.
const MAX_FRAME_LEN: u32 = 64 * 1024;

fuzz_target!(|data: &[u8]| {
    check::<Request>(data);
    check::<Response>(data);
});

fn check<M: Message + std::fmt::Debug + PartialEq>(data: &[u8]) {
    let decoded = decode_with_limit::<M>(data, MAX_FRAME_LEN);
    if let Ok(Some((frame, used))) = &decoded {
        let again = reencode(frame).expect("a decoded frame re-encodes");
        assert_eq!(again, data[..*used], "the encoding is canonical");
    }

    // The blocking reader must agree with the sans-IO decoder on the same bytes.
    let mut buf = Vec::new();
    let read = read_frame::<_, M>(&mut Cursor::new(data), &mut buf, MAX_FRAME_LEN);
    match (&decoded, &read) {
        (Ok(Some((frame, _))), Ok(read)) => assert_eq!(frame, read),
        (Ok(Some(_)), Err(error)) => panic!("decode accepted what read_frame refused: {error}"),
        (Err(expected), Err(ReadError::Decode(error))) => assert_eq!(expected, error),
        (Ok(None), Err(ReadError::Closed | ReadError::Io(_))) => {}
        (decoded, read) => panic!("decode gave {decoded:?} but read_frame gave {read:?}"),
    }
}

fn reencode<M: Message>(frame: &Frame<M>) -> Result<Vec<u8>, EncodeError> {
    let mut out = Vec::new();
    proto::encode(frame.request_id, &frame.trace, &frame.message, &mut out)?;
    Ok(out)
}
