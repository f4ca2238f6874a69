//! One module per verb: its flags (`Args`), its examples (`EXAMPLES`) and what it does (`run`).

pub mod completions;
pub mod config;
pub mod graph;
pub mod up;

use std::path::Path;

use sturdy_compose::Plan;

use crate::error::CliError;

/// Loads and plans the application at `path`: a sturdy.yaml, or a directory holding one.
pub fn load(path: &Path) -> Result<Plan, CliError> {
    Ok(sturdy_compose::load(path)?)
}
