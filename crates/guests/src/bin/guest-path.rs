//! Prints the path of a guest image: `cargo run -p guests --bin guest-path -- hello`.

use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    match (args.next(), args.next()) {
        (Some(name), None) if guests::dir().join(&name).is_file() => {
            println!("{}", guests::path(&name).display());
            ExitCode::SUCCESS
        }
        (Some(name), None) => {
            eprintln!(
                "guest-path: no guest image {name:?} in {}",
                guests::dir().display()
            );
            ExitCode::FAILURE
        }
        _ => {
            eprintln!("usage: guest-path NAME");
            ExitCode::from(2)
        }
    }
}
