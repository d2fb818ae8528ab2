//! `VERDICTS`, the probe's verdict map, as the identity stage writes it: one verdict per
//! classified file, under the key the probe reported it with.

use aya::maps::{HashMap as BpfHashMap, MapData};
use t1609_common::{EXE_NOT_A_TOOL, ExeKey, ExeVerdict};

/// The probe's `VERDICTS` map, shared by the classification worker (which writes each
/// verdict as it comes) and the hot path (verdicts the classifier's cache answered).
pub struct VerdictMap {
    map: BpfHashMap<MapData, ExeKey, ExeVerdict>,
}

impl std::fmt::Debug for VerdictMap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VerdictMap")
    }
}

impl VerdictMap {
    pub fn new(map: BpfHashMap<MapData, ExeKey, ExeVerdict>) -> VerdictMap {
        VerdictMap { map }
    }

    /// The file is tool `tool` (0: not a tool). Written whether or not the pending entry
    /// is still there: a verdict is a fact about that content, and the LRU may have
    /// evicted the entry meanwhile.
    pub fn write(&mut self, key: &ExeKey, tool: u32) -> Result<(), aya::maps::MapError> {
        let state = if tool == 0 { EXE_NOT_A_TOOL } else { tool };
        self.map.insert(key, ExeVerdict::known(state), 0)
    }

    /// What the map holds for `key`.
    pub fn get(&self, key: &ExeKey) -> Option<ExeVerdict> {
        self.map.get(key, 0).ok()
    }

    /// Removes every entry (a reload may have changed what is a tool); returns how many.
    pub fn clear(&mut self) -> usize {
        let keys: Vec<ExeKey> = self.map.keys().filter_map(Result::ok).collect();
        keys.iter().filter(|k| self.map.remove(k).is_ok()).count()
    }
}
