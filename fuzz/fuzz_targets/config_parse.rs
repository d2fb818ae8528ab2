//! The agent's config parser: `t1609_agent::config::Config::from_toml` on UTF-8 text
//! (which also validates), as `t1609-agent --config` and SIGHUP reloads run it.
#![no_main]

use std::path::Path;

use libfuzzer_sys::fuzz_target;
use t1609_agent::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    match Config::from_toml(Path::new("fuzz.toml"), text) {
        Ok(cfg) => {
            let _ = cfg.deliver_config();
        }
        Err(e) => {
            // Errors are printed to the operator; rendering must not panic either.
            let _ = e.to_string();
        }
    }
});
