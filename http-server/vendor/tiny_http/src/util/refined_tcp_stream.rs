use std::io::Result as IoResult;
use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr};

use crate::connection::Connection;

// gatehouse patch: the `Stream` enum that chose between a plain and a TLS connection is gone
// with the TLS support; a `RefinedTcpStream` wraps the plain connection directly.
pub struct RefinedTcpStream {
    stream: Connection,
    close_read: bool,
    close_write: bool,
}

impl RefinedTcpStream {
    // gatehouse patch: was `impl Clone for Stream` with `try_clone().unwrap()`, which panicked
    // the accept thread (and so ended accepting for good) when the process ran out of file
    // descriptors. Now the error drops that one connection.
    pub(crate) fn new(stream: Connection) -> IoResult<(RefinedTcpStream, RefinedTcpStream)> {
        let (read, write) = (stream.try_clone()?, stream);

        let read = RefinedTcpStream {
            stream: read,
            close_read: true,
            close_write: false,
        };

        let write = RefinedTcpStream {
            stream: write,
            close_read: false,
            close_write: true,
        };

        Ok((read, write))
    }

    /// gatehouse patch: sends the FIN now: the client learns that nothing more will come.
    pub(crate) fn shutdown_write(&mut self) {
        self.stream.shutdown(Shutdown::Write).ok();
    }

    pub(crate) fn peer_addr(&mut self) -> IoResult<Option<SocketAddr>> {
        self.stream.peer_addr()
    }
}

impl Drop for RefinedTcpStream {
    fn drop(&mut self) {
        if self.close_read {
            self.stream.shutdown(Shutdown::Read).ok();
        }

        if self.close_write {
            self.stream.shutdown(Shutdown::Write).ok();
        }
    }
}

impl Read for RefinedTcpStream {
    fn read(&mut self, buf: &mut [u8]) -> IoResult<usize> {
        self.stream.read(buf)
    }
}

impl Write for RefinedTcpStream {
    fn write(&mut self, buf: &[u8]) -> IoResult<usize> {
        self.stream.write(buf)
    }

    fn flush(&mut self) -> IoResult<()> {
        self.stream.flush()
    }
}
