//! The guest's boot configuration: its NICs' addresses, its capabilities and the endpoints it
//! provides, read from the command line (`docs/bootcfg.md`, crate [`sturdy_bootcfg`]) the first
//! time something asks for it.

use alloc::boxed::Box;

use sturdy_bootcfg::BootConfig;

use crate::global::Global;
use crate::start;

type Parsed = Result<BootConfig, sturdy_bootcfg::Error>;

static CONFIG: Global<Option<&'static Parsed>> = Global::new(None);

/// The boot configuration from the command line, or what is wrong with it.
///
/// The `--sturdy.` arguments it is read from are also in [`Env::args`](crate::Env::args);
/// applications ignore them.
pub fn boot_config() -> Result<&'static BootConfig, &'static sturdy_bootcfg::Error> {
    let parsed: &'static Parsed = CONFIG.with(|config| {
        *config.get_or_insert_with(|| {
            let args = start::cmdline().split_ascii_whitespace();
            Box::leak(Box::new(
                sturdy_bootcfg::parse(args).map(|(config, _)| config),
            ))
        })
    });
    parsed.as_ref()
}
