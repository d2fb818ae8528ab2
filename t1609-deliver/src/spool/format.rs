//! The spool's on-disk format, as bytes: segment file names, record framing and the text
//! of the `ack` file. No I/O here; the other modules read and write what this describes.

/// First word of every record: "PS1T" little-endian, for T1609 spool.
pub(super) const MAGIC: u32 = 0x5431_5350;
/// A record header: magic, payload length and CRC, `u32` LE each.
pub(super) const HEADER: u64 = 12;
/// Largest record accepted (the payload of one alert).
pub const MAX_RECORD: u64 = 256 * 1024 * 1024;
/// Id of the first segment ever created: the ids below it are left for the segments
/// [`Spool::prepend`](super::Spool::prepend) puts in front of the oldest one.
pub(super) const FIRST_SEGMENT: u64 = 1 << 32;

const ACK_VERSION: &str = "t1609-spool-ack-v1";

/// `<20-digit id>.seg`: the names sort in segment order.
pub(super) fn seg_name(id: u64) -> String {
    format!("{id:020}.seg")
}

/// The id of a segment file name, or `None` for any other file.
pub(super) fn segment_id(file_name: &str) -> Option<u64> {
    file_name.strip_suffix(".seg")?.parse().ok()
}

/// The CRC of a record covers its length as well as its payload, so a damaged length is
/// caught too.
pub(super) fn crc(len: u32, payload: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&len.to_le_bytes());
    h.update(payload);
    h.finalize()
}

/// One record: `magic | len | crc32(len, payload) | payload`.
pub(super) fn frame(payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let mut v = Vec::with_capacity(payload.len() + 12);
    v.extend_from_slice(&MAGIC.to_le_bytes());
    v.extend_from_slice(&len.to_le_bytes());
    v.extend_from_slice(&crc(len, payload).to_le_bytes());
    v.extend_from_slice(payload);
    v
}

/// A record header as read from disk, not yet checked.
#[derive(Debug, Clone, Copy)]
pub(super) struct Header {
    pub magic: u32,
    pub len: u32,
    pub sum: u32,
}

impl Header {
    /// Decodes the first [`HEADER`] bytes of `b`.
    pub(super) fn parse(b: &[u8; 12]) -> Self {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Self {
            magic: word(0),
            len: word(4),
            sum: word(8),
        }
    }

    /// Whether `payload` is the one this header announced.
    pub(super) fn checks(&self, payload: &[u8]) -> bool {
        crc(self.len, payload) == self.sum
    }
}

/// Offset in `buf` of the first whole record whose CRC checks, if any: where a reader
/// resumes after a torn or damaged record.
pub(super) fn find_record(buf: &[u8]) -> Option<usize> {
    let m = MAGIC.to_le_bytes();
    let mut i = 0;
    while i + 12 <= buf.len() {
        if buf[i..i + 4] == m {
            let h = Header::parse(buf[i..i + 12].try_into().expect("12 bytes"));
            let end = i + 12 + h.len as usize;
            if end <= buf.len() && h.checks(&buf[i + 12..end]) {
                return Some(i);
            }
        }
        i += 1;
    }
    None
}

/// The `ack` file: the read position, `t1609-spool-ack-v1 <segment> <offset>`.
pub(super) fn ack_line(seg: u64, off: u64) -> String {
    format!("{ACK_VERSION} {seg} {off}\n")
}

/// The read position in an `ack` file's text; `None` when it is not one.
pub(super) fn parse_ack(text: &str) -> Option<(u64, u64)> {
    let mut it = text.split_whitespace();
    (it.next()? == ACK_VERSION).then_some(())?;
    Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_and_ack_round_trip() {
        let mut buf = b"junk".to_vec();
        buf.extend(frame(b"payload"));
        assert_eq!(find_record(&buf), Some(4));
        let h = Header::parse(buf[4..16].try_into().unwrap());
        assert_eq!((h.magic, h.len), (MAGIC, 7));
        assert!(h.checks(b"payload") && !h.checks(b"paylaod"));
        buf.pop();
        assert_eq!(find_record(&buf), None, "a torn record is not found");
        assert_eq!(parse_ack(&ack_line(7, 42)), Some((7, 42)));
        assert_eq!(parse_ack("t1609-spool-ack-v0 7 42"), None);
        assert_eq!(segment_id(&seg_name(FIRST_SEGMENT)), Some(FIRST_SEGMENT));
        assert_eq!(segment_id("ack"), None);
    }
}
