//! The TOML configuration (`--config`) from untrusted text: parsing returns a config or an
//! error; a config that parses selects its features without panicking, and what
//! `Config::to_toml` writes for it parses again.
#![no_main]

use ipscope::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(config) = toml::from_str::<Config>(text) else {
        return;
    };
    let _ = config.measure.feature_set();
    let written = config.to_toml();
    if let Err(e) = toml::from_str::<Config>(&written) {
        panic!("a parsed configuration does not parse again after to_toml: {e}\n{written}");
    }
});
