//! What an ELF file says about itself: its build-ids (GNU and Go) and the Go build info
//! (main package, main module and its version, build settings).
//!
//! Reads are lazy and bounded: `object` parses the headers through a [`ReadCache`], and
//! every data read is capped, so a hostile file (huge declared sections, pointers out of
//! range, endless strings) costs a few bounded reads, never a large allocation.

use std::{fs::File, io};

use object::{Object as _, ObjectSection as _, ObjectSegment as _, ReadCache, ReadRef as _};

/// Build-id notes are a few dozen bytes; anything larger is not one.
const NOTE_MAX: u64 = 4096;
/// The Go build info of a large program (kubectl: ~250 dependency lines) is ~30 KiB.
const GO_INFO_MAX: u64 = 1 << 20;
/// Where to look for the build info magic when there is no section table: the start of
/// each of the first few segments, within a total budget.
const SEGMENT_SCAN_MAX: u64 = 1 << 20;
const SEGMENT_SCAN_BUDGET: u64 = 4 << 20;
const SEGMENT_SCAN_COUNT: usize = 16;
const GO_MAGIC: &[u8; 14] = b"\xff Go buildinf:";

/// Why a file could not be read as ELF.
#[derive(Debug, thiserror::Error)]
pub enum ElfError {
    #[error("not an ELF file we can parse: {0}")]
    Parse(#[source] object::Error),
    #[error("read error: {0}")]
    Io(#[source] io::Error),
}

/// The Go build info embedded in a Go program.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GoBuildInfo {
    /// `go1.24.3`.
    pub go_version: String,
    /// The main package (`github.com/docker/cli/cmd/docker`); distributions that build
    /// in GOPATH mode record only this.
    pub path: Option<String>,
    /// The main module (`github.com/docker/cli`) and its version, when recorded.
    pub module: Option<String>,
    pub module_version: Option<String>,
    /// A version stamped with `-ldflags -X …Version=` (`28.2.2`), when there is one.
    pub ldflags_version: Option<String>,
}

/// What the ELF headers and notes say.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ElfFacts {
    /// `NT_GNU_BUILD_ID`, hex.
    pub gnu_build_id: Option<String>,
    /// The Go build ID note (`.note.go.buildid`), as text.
    pub go_build_id: Option<String>,
    pub go: Option<GoBuildInfo>,
}

impl ElfFacts {
    /// The build-id used as an identity: the GNU one, else Go's.
    pub fn build_id(&self) -> Option<String> {
        self.gnu_build_id
            .as_ref()
            .map(|b| format!("gnu:{b}"))
            .or_else(|| self.go_build_id.as_ref().map(|b| format!("go:{b}")))
    }
}

/// Reads the facts of an ELF file. `Ok(None)`: not ELF at all.
pub fn read(file: &File) -> Result<Option<ElfFacts>, ElfError> {
    let mut magic = [0u8; 4];
    match std::os::unix::fs::FileExt::read_exact_at(file, &mut magic, 0) {
        Ok(()) if magic == *b"\x7fELF" => {}
        Ok(()) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(ElfError::Io(e)),
    }
    let cache = ReadCache::new(file);
    let obj = object::File::parse(&cache).map_err(ElfError::Parse)?;
    let mut facts = ElfFacts::default();
    let mut go_section = None;
    for s in obj.sections() {
        let Ok(name) = s.name_bytes() else { continue };
        let Some((off, size)) = s.file_range() else {
            continue;
        };
        match name {
            b".note.gnu.build-id" if size <= NOTE_MAX => {
                let data = bytes(&cache, off, size);
                facts.gnu_build_id =
                    note_desc(data, b"GNU\0", 3, obj.is_little_endian()).map(crate::hex);
            }
            b".note.go.buildid" if size <= NOTE_MAX => {
                let data = bytes(&cache, off, size);
                facts.go_build_id = note_desc(data, b"Go\0\0", 4, obj.is_little_endian())
                    .map(|d| String::from_utf8_lossy(d).into_owned());
            }
            b".go.buildinfo" => go_section = Some((off, size.min(GO_INFO_MAX))),
            _ => {}
        }
    }
    let header = match go_section {
        Some((off, size)) => Some((off, bytes(&cache, off, size))),
        None => scan_segments(&cache, &obj),
    };
    if let Some((_, data)) = header {
        facts.go = go_info(&cache, &obj, data);
    }
    Ok(Some(facts))
}

/// A bounded read; an out-of-range request reads nothing.
fn bytes<'a>(cache: &'a ReadCache<&File>, off: u64, size: u64) -> &'a [u8] {
    cache.read_bytes_at(off, size).unwrap_or(&[])
}

/// Without a section table (stripped headers, some packers), Go's build info still sits
/// at a 16-byte boundary in the first writable segment.
fn scan_segments<'a>(
    cache: &'a ReadCache<&File>,
    obj: &object::File<'a, &'a ReadCache<&File>>,
) -> Option<(u64, &'a [u8])> {
    let mut budget = SEGMENT_SCAN_BUDGET;
    for seg in obj.segments().take(SEGMENT_SCAN_COUNT) {
        let (off, size) = seg.file_range();
        let want = size.min(SEGMENT_SCAN_MAX).min(budget);
        budget -= want;
        let data = bytes(cache, off, want);
        let mut i = 0;
        while i + GO_MAGIC.len() <= data.len() {
            if data[i..].starts_with(GO_MAGIC) {
                let end = data
                    .len()
                    .min(i + usize::try_from(GO_INFO_MAX).unwrap_or(usize::MAX));
                return Some((off + i as u64, &data[i..end]));
            }
            i += 16;
        }
    }
    None
}

/// The descriptor of the first note named `name` of type `kind` in a note section.
fn note_desc<'a>(data: &'a [u8], name: &[u8], kind: u32, le: bool) -> Option<&'a [u8]> {
    let word = |b: &[u8]| {
        let a: [u8; 4] = b.try_into().ok()?;
        Some(if le {
            u32::from_le_bytes(a)
        } else {
            u32::from_be_bytes(a)
        })
    };
    let align4 = |n: usize| n.checked_add(3).map(|n| n & !3);
    let mut rest = data;
    while rest.len() >= 12 {
        let namesz = usize::try_from(word(&rest[0..4])?).ok()?;
        let descsz = usize::try_from(word(&rest[4..8])?).ok()?;
        let ty = word(&rest[8..12])?;
        let name_end = 12usize.checked_add(namesz)?;
        let desc_start = 12usize.checked_add(align4(namesz)?)?;
        let desc_end = desc_start.checked_add(descsz)?;
        if desc_end > rest.len() || name_end > rest.len() {
            return None;
        }
        if ty == kind && rest[12..name_end] == *name {
            return Some(&rest[desc_start..desc_end]);
        }
        rest = &rest[align4(desc_end)?.min(rest.len())..];
    }
    None
}

/// Decodes the build info whose header starts `data` (Go 1.18+ inline strings, or the
/// older pointers into the data segment).
fn go_info<'a>(
    cache: &'a ReadCache<&File>,
    obj: &object::File<'a, &'a ReadCache<&File>>,
    data: &[u8],
) -> Option<GoBuildInfo> {
    if data.len() < 32 || !data.starts_with(GO_MAGIC) {
        return None;
    }
    let ptr_size = usize::from(data[14]);
    let flags = data[15];
    let big_endian = flags & 1 != 0;
    let (version, modinfo) = if flags & 2 != 0 {
        let (v, rest) = varint_string(&data[32..])?;
        let (m, _) = varint_string(rest)?;
        (v.to_vec(), m.to_vec())
    } else {
        if ptr_size != 4 && ptr_size != 8 {
            return None;
        }
        let uint = |b: &[u8]| -> Option<u64> {
            let mut v = 0u64;
            let b = b.get(..ptr_size)?;
            for i in 0..ptr_size {
                let byte = if big_endian {
                    b[i]
                } else {
                    b[ptr_size - 1 - i]
                };
                v = (v << 8) | u64::from(byte);
            }
            Some(v)
        };
        let read_at_addr = |addr: u64, len: u64| -> Option<&[u8]> {
            let len = len.min(GO_INFO_MAX);
            obj.segments().find_map(|seg| {
                let (off, size) = seg.file_range();
                let start = addr.checked_sub(seg.address())?;
                (start.checked_add(len)? <= size).then(|| bytes(cache, off + start, len))
            })
        };
        // Each pointer leads to a Go string header: data pointer, then length.
        let string_at = |addr: u64| -> Option<Vec<u8>> {
            let hdr = read_at_addr(addr, 2 * ptr_size as u64)?;
            let ptr = uint(hdr)?;
            let len = uint(&hdr[ptr_size..])?;
            read_at_addr(ptr, len).map(<[u8]>::to_vec)
        };
        let v = string_at(uint(&data[16..])?)?;
        let m = string_at(uint(&data[16 + ptr_size..])?).unwrap_or_default();
        (v, m)
    };
    let mut info = GoBuildInfo {
        go_version: String::from_utf8_lossy(&version).into_owned(),
        ..GoBuildInfo::default()
    };
    // The module info is framed by 16 sentinel bytes on each side.
    let m = if modinfo.len() >= 33 && modinfo[modinfo.len() - 17] == b'\n' {
        &modinfo[16..modinfo.len() - 16]
    } else {
        &modinfo[..]
    };
    parse_modinfo(&String::from_utf8_lossy(m), &mut info);
    Some(info)
}

/// A uvarint-prefixed string and what follows it.
fn varint_string(b: &[u8]) -> Option<(&[u8], &[u8])> {
    let mut n: u64 = 0;
    for (i, &byte) in b.iter().enumerate().take(10) {
        n |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            let start = i + 1;
            let end = start.checked_add(usize::try_from(n).ok()?)?;
            return Some((b.get(start..end)?, &b[end..]));
        }
    }
    None
}

fn parse_modinfo(text: &str, info: &mut GoBuildInfo) {
    for line in text.lines() {
        let mut f = line.split('\t');
        match f.next() {
            Some("path") => info.path = f.next().map(str::to_string),
            Some("mod") => {
                info.module = f.next().map(str::to_string);
                info.module_version = f
                    .next()
                    .filter(|v| !v.is_empty() && *v != "(devel)")
                    .map(str::to_string);
            }
            Some("build") => {
                if let Some(flags) = f.next().and_then(|kv| kv.strip_prefix("-ldflags=")) {
                    info.ldflags_version = ldflags_version(flags);
                }
            }
            _ => {}
        }
    }
}

/// `-X "github.com/docker/cli/cli/version.Version=28.2.2"`,
/// `-X k8s.io/component-base/version.gitVersion=v1.30.0` → the version.
fn ldflags_version(flags: &str) -> Option<String> {
    for key in [".Version=", ".gitVersion="] {
        if let Some(i) = flags.find(key) {
            let v: String = flags[i + key.len()..]
                .chars()
                .take_while(|c| !c.is_whitespace() && !matches!(c, '"' | '\'' | '\\'))
                .take(64)
                .collect();
            if !v.is_empty() {
                return Some(v);
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn varint_strings_are_bounded() {
        assert_eq!(
            varint_string(b"\x03abcrest"),
            Some((&b"abc"[..], &b"rest"[..]))
        );
        assert_eq!(varint_string(b"\x05ab"), None);
        assert_eq!(
            varint_string(b"\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01"),
            None
        );
        assert_eq!(varint_string(b""), None);
    }

    #[test]
    fn notes_are_checked_against_their_bounds() {
        let mut n = Vec::new();
        n.extend_from_slice(&4u32.to_le_bytes());
        n.extend_from_slice(&3u32.to_le_bytes());
        n.extend_from_slice(&3u32.to_le_bytes());
        n.extend_from_slice(b"GNU\0\xab\xcd\xef");
        assert_eq!(note_desc(&n, b"GNU\0", 3, true), Some(&b"\xab\xcd\xef"[..]));
        // A descriptor size past the end.
        n[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(note_desc(&n, b"GNU\0", 3, true), None);
        assert_eq!(note_desc(&n[..5], b"GNU\0", 3, true), None);
    }

    #[test]
    fn modinfo_lines() {
        let mut info = GoBuildInfo::default();
        parse_modinfo(
            "path\tgithub.com/docker/cli/cmd/docker\nmod\tgithub.com/docker/cli\t(devel)\t\nbuild\t-ldflags=\" -X \\\"github.com/docker/cli/cli/version.Version=28.2.2\\\" \"\n",
            &mut info,
        );
        assert_eq!(
            info.path.as_deref(),
            Some("github.com/docker/cli/cmd/docker")
        );
        assert_eq!(info.module.as_deref(), Some("github.com/docker/cli"));
        assert_eq!(info.module_version, None);
        assert_eq!(info.ldflags_version.as_deref(), Some("28.2.2"));
        assert_eq!(
            ldflags_version("-X k8s.io/component-base/version.gitVersion=v1.30.2 -s"),
            Some("v1.30.2".into())
        );
        assert_eq!(ldflags_version("-s -w"), None);
    }
}
