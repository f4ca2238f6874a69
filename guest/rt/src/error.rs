//! Errors of device operations: refusals by the SDK and results reported by the monitor.

use core::fmt;

use sturdy_abi::hypercall::{RESULT_AGAIN, RESULT_EINVAL, RESULT_OK};

/// Why opening or using a device failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The manifest declares no device of that name.
    NoSuchDevice,
    /// The device exists but is of another type (block vs network).
    WrongDeviceType,
    /// The monitor did not attach the device (monitors refuse to start in that case,
    /// docs/hvt-abi.md, Manifest).
    NotAttached,
    /// Refused by the SDK before reaching the monitor: a block request that is not one whole,
    /// aligned block inside the device, or a frame or buffer of the wrong size.
    BadRequest,
    /// No frame to read now (AGAIN).
    Again,
    /// The monitor does not offer this operation (a sturdy extension under another monitor).
    Unsupported,
    /// The monitor refused the request (EINVAL).
    Invalid,
    /// The monitor reported another failure (EUNSPEC, or a result code sturdy-rt does not know).
    Unspecified,
}

impl Error {
    /// Maps a hypercall result code to `Ok` or the error it means.
    pub(crate) fn check(ret: i32) -> Result<(), Error> {
        match ret {
            RESULT_OK => Ok(()),
            RESULT_AGAIN => Err(Error::Again),
            RESULT_EINVAL => Err(Error::Invalid),
            _ => Err(Error::Unspecified),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Error::NoSuchDevice => "no device of that name in the manifest",
            Error::WrongDeviceType => "the device is of another type",
            Error::NotAttached => "the device is not attached",
            Error::BadRequest => "request refused by sturdy-rt (size, alignment or range)",
            Error::Again => "nothing to read now",
            Error::Unsupported => "the monitor does not offer this operation",
            Error::Invalid => "request refused by the monitor (EINVAL)",
            Error::Unspecified => "the monitor reported an error",
        })
    }
}
