//! Keys and kinds of the connect records: which Unix socket paths are watched, and what
//! kind of destination a [`crate::NetRecord`] names.

/// `sun_path` length of `struct sockaddr_un`.
pub const UNIX_PATH_LEN: usize = 108;

/// Key of the `UNIX_PATHS` map: a socket path, NUL-padded.
pub type UnixPathKey = [u8; UNIX_PATH_LEN];

/// `NetRecord::net_kind` values.
pub mod net_kind {
    pub const TCP4: u16 = 1;
    pub const TCP6: u16 = 2;
    pub const UNIX: u16 = 3;
}
