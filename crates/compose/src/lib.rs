//! The sturdy application file (`sturdy.yaml`, `docs/sturdy-yaml.md`): parsing with positions,
//! validation with errors that name the file, line, column and key, and the [`Plan`]:
//! addresses, the capability graph, start order and each guest's arguments.
//!
//! Pure: nothing here does I/O except [`load`] reading the file.
//!
//! ```no_run
//! let plan = sturdy_compose::load("examples/guestbook/sturdy.yaml".as_ref())?;
//! for name in &plan.start_order {
//!     let service = plan.service(name).unwrap();
//!     println!("{} {} {:?}", service.name, service.image.display(), service.args);
//! }
//! let fabric = plan.fabric()?; // what the fabric enforces
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![forbid(unsafe_code)]

mod check;
mod error;
mod model;
mod plan;
pub mod units;
mod yaml;

use std::path::Path;

pub use check::DEFAULT_SUBNET;
pub use error::{ComposeError, Diagnostic};
pub use model::{keys, Condition, Probe, Restart};
pub use plan::{
    AttachmentPlan, CapabilityPlan, DependencyPlan, EgressPlan, EndpointPlan, HealthcheckPlan,
    Plan, PublishedPlan, ServicePlan, VolumePlan, DEFAULT_MEM,
};

/// The file name looked for when given a directory.
pub const FILE_NAME: &str = "sturdy.yaml";

/// Reads and plans the application file at `path` (or `path/sturdy.yaml` if `path` is a
/// directory).
pub fn load(path: &Path) -> Result<Plan, ComposeError> {
    let file = if path.is_dir() {
        path.join(FILE_NAME)
    } else {
        path.to_path_buf()
    };
    let src = read_file(&file).map_err(|source| ComposeError::Read {
        path: file.clone(),
        source,
    })?;
    parse(&src, &file)
}

/// The largest application file read (a file of hundreds of services is a few tens of KiB).
pub const FILE_MAX: u64 = 1 << 20;

/// Reads an application file: a regular file (opened without blocking, so a FIFO is refused
/// instead of waited on) of at most [`FILE_MAX`] bytes of UTF-8.
fn read_file(path: &Path) -> std::io::Result<String> {
    use std::io::{Error, ErrorKind, Read};
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::File::options()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(Error::new(ErrorKind::InvalidInput, "not a regular file"));
    }
    if meta.len() > FILE_MAX {
        return Err(Error::new(
            ErrorKind::InvalidInput,
            format!(
                "it is {} bytes; an application file may be at most {} MiB",
                meta.len(),
                FILE_MAX >> 20
            ),
        ));
    }
    let mut src = String::new();
    file.take(FILE_MAX).read_to_string(&mut src)?;
    Ok(src)
}

/// Plans the application whose text is `src`; `file` is its path, used in messages and to
/// resolve image paths (relative to its directory) and as the default application name (its
/// directory's name). Returns every problem found, in file order.
pub fn parse(src: &str, file: &Path) -> Result<Plan, ComposeError> {
    let mut sink = error::Sink::new(file.to_path_buf());
    let docs = match yaml::parse(src) {
        Ok(docs) => docs,
        Err(e) => {
            let mut msg = format!("not valid YAML: {}", e.message);
            if e.message.contains("quoted scalar") {
                msg.push_str(" (a quoted string is not closed: add its closing quote)");
            }
            if src.contains('\t') {
                msg.push_str(" (the file contains tabs: YAML indents with spaces only)");
            }
            sink.error(e.pos, "", msg);
            return Err(ComposeError::Invalid(sink.finish()));
        }
    };
    let default_name = file
        .parent()
        .and_then(|d| d.file_name())
        .and_then(|n| n.to_str());
    let app = model::Reader { sink: &mut sink }.app(&docs, default_name);
    let subnet = check::check(&app, &mut sink);
    if !sink.is_empty() {
        return Err(ComposeError::Invalid(sink.finish()));
    }
    let subnet = subnet.expect("a subnet when there is no error");
    match plan::build(&app, subnet, file, &mut sink) {
        Some(plan) if sink.is_empty() => Ok(plan),
        _ => Err(ComposeError::Invalid(sink.finish())),
    }
}
