//! The kernel side of file identity, as the capture stage keeps it: `INODES` (the
//! installed tools by device and inode, replaced in place on reload), `EXE_KNOWN` (the
//! probe's fingerprints of files that are not tools, zeroed on reload) and `VERDICTS`,
//! which it hands to the identity stage (`crate::identity`), the one writer of verdicts.

use std::collections::BTreeMap;

use aya::maps::{HashMap as BpfHashMap, MapData};
use t1609_common::{ExeKey, ExeVerdict, InodeKey};

use super::{Capture, CaptureError};

impl Capture {
    /// Replaces `INODES` in place with `entries` ((device, inode) → tool id): new and
    /// changed entries first, then the ones gone, so an installed tool present before and
    /// after is never missing.
    pub fn set_inodes(&mut self, entries: &BTreeMap<InodeKey, u32>) -> Result<(), CaptureError> {
        let Some(map) = self.inodes.as_mut() else {
            return Ok(());
        };
        for (key, tool) in entries {
            if self.inode_entries.get(key) != Some(tool) {
                map.insert(key, tool, 0)
                    .map_err(CaptureError::map("INODES"))?;
            }
        }
        for key in self.inode_entries.keys() {
            if !entries.contains_key(key) {
                map.remove(key).map_err(CaptureError::map("INODES"))?;
            }
        }
        self.inode_entries.clone_from(entries);
        Ok(())
    }

    /// Forgets the probe's fingerprints of files that are not tools (a reload cleared
    /// their verdicts: what is a tool may have changed).
    pub fn forget_known_files(&mut self) -> Result<(), CaptureError> {
        let Some(known) = self.exe_known.as_mut() else {
            return Ok(());
        };
        for slot in 0..t1609_common::EXE_KNOWN_SLOTS {
            known
                .set(slot, 0, 0)
                .map_err(CaptureError::map("EXE_KNOWN"))?;
        }
        Ok(())
    }

    /// Hands `VERDICTS` to the identity stage; `None` when identity is off or it was
    /// taken already.
    pub fn take_verdicts(&mut self) -> Option<BpfHashMap<MapData, ExeKey, ExeVerdict>> {
        self.verdicts.take()
    }

    /// Whether the probe reads the executed file's identity; `Err` says why not.
    pub fn identity(&self) -> Result<(), &str> {
        match &self.identity_off {
            None => Ok(()),
            Some(why) => Err(why),
        }
    }
}
