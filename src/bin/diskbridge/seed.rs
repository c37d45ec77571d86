//! `diskbridge seed`: a NoCloud seed disk (`diskbridge::seed`) from the command line's host name, key files,
//! password file and user-data file, written in any single-disk output format.

use super::args::{self, Arg};
use super::{Failure, format_arg, positionals, target_for, write_image};
use diskbridge::Error;
use diskbridge::formats::Format;
use diskbridge::options::OptionList;
use diskbridge::seed::{self, SeedConfig, password, ssh_key, user_data};
use std::io::Read;
use std::path::Path;

/// The most read of a password file: far more than any first line a password can be ([`password::MAX_LEN`]).
const MAX_PASSWORD_FILE: usize = 64 << 10;

/// The first-login options, as `seed` and `convert -O ova|ovf` take them.
pub const FLAGS: [&str; 4] = ["hostname", "ssh-key", "password-file", "user-data"];

/// What the first-login options among `parsed` ask for, checked, and the files they name.
pub fn config(parsed: &[Arg]) -> Result<(SeedConfig, Vec<String>), Failure> {
    let (mut config, mut inputs) = (SeedConfig::default(), Vec::new());
    for a in parsed {
        let Arg::Long(name, Some(value)) = a else { continue };
        let once = |given: bool| {
            if given { Err(Failure::Usage(format!("--{name} given twice"))) } else { Ok(()) }
        };
        match name.as_str() {
            "hostname" => {
                once(config.hostname.is_some())?;
                seed::hostname::check(value).map_err(|e| Failure::Usage(e.message().into()))?;
                config.hostname = Some(value.clone());
            }
            "ssh-key" => {
                let text = read(value, ssh_key::MAX_FILE_LEN)?;
                config.ssh_keys.extend(ssh_key::keys_in(&text).map_err(|e| in_file(value, e))?);
            }
            "password-file" => {
                once(config.password.is_some())?;
                config.password = Some(first_line(value)?);
            }
            "user-data" => {
                once(config.user_data.is_some())?;
                let bytes = read(value, user_data::MAX_LEN)?;
                user_data::inspect(&bytes).map_err(|e| in_file(value, e))?;
                config.user_data = Some(bytes);
            }
            _ => continue,
        }
        inputs.push(value.clone());
    }
    Ok((config, inputs))
}

/// Refuses an output that is one of the files the options name.
pub fn refuse_overwriting(inputs: &[String], output: &str) -> Result<(), Failure> {
    match inputs.iter().find(|i| output != "-" && super::output::same_file(Path::new(i), Path::new(output))) {
        Some(input) => {
            Err(Failure::Error(Some(output.into()), Error::argument(format!("Refusing to overwrite '{input}'"))))
        }
        None => Ok(()),
    }
}

/// `seed [--hostname NAME] [--ssh-key FILE]... [--password-file FILE] [--user-data FILE] [-O FMT] OUTPUT`.
pub fn run(argv: &[String]) -> Result<(), Failure> {
    let parsed = args::parse(argv, "O", &FLAGS)?;
    let mut format = None;
    for a in &parsed {
        match a {
            Arg::Short('O', Some(f)) => format = Some(format_arg(f)?),
            Arg::Long(name, Some(_)) if FLAGS.contains(&name.as_str()) => {}
            Arg::Positional(_) => {}
            other => return Err(Failure::Usage(format!("seed: unsupported option {other:?}"))),
        }
    }
    let (config, inputs) = config(&parsed)?;
    let [output] = positionals(&parsed)[..] else {
        return Err(Failure::Usage("seed needs one OUTPUT".into()));
    };
    if config.is_empty() {
        return Err(Failure::Usage(
            "seed needs at least one of --hostname, --ssh-key, --password-file, --user-data".into(),
        ));
    }
    refuse_overwriting(&inputs, output)?;
    // As convert names formats: -O, else the output's extension, else raw.
    let format = format
        .or_else(|| Path::new(output).extension().and_then(|e| Format::from_extension(&e.to_string_lossy())))
        .unwrap_or_else(Format::raw);
    if format.spec().disks.is_some() || format.spec().open.is_none() {
        return Err(Failure::Usage(format!(
            "A seed disk is one disk: write it as raw, qcow2, vmdk, vhdx or vpc, not {format}"
        )));
    }
    if output != "-" {
        super::output::check_place(Path::new(output))?;
    }
    let mut target = target_for(format, OptionList::default(), output, false)?;
    let image = seed::image(&config, target.settings.seed, target.settings.epoch).map_err(Failure::from)?;
    target.settings.seed = seed::container_seed(target.settings.seed);
    write_image(image, None, &target, output, false)
}

/// Up to `limit + 1` bytes of the file at `path`, so a file over the limit is seen to be without being read whole.
fn read(path: &str, limit: usize) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(limit as u64 + 1).read_to_end(&mut bytes))
        .map_err(|e| in_file(path, Error::io(e, "Cannot read")))?;
    Ok(bytes)
}

/// The password: the file's first line, without its line ending.
fn first_line(path: &str) -> Result<String, Failure> {
    let bytes = read(path, MAX_PASSWORD_FILE)?;
    if bytes.len() > MAX_PASSWORD_FILE {
        return Err(in_file(path, Error::limit("A password file over 64 KiB is not a password file")));
    }
    let line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let text =
        std::str::from_utf8(line).map_err(|_| in_file(path, Error::argument("The password is not UTF-8 text")))?;
    password::check(text).map_err(|e| in_file(path, e))?;
    Ok(text.to_string())
}

fn in_file(path: &str, e: Error) -> Failure {
    Failure::Error(Some(path.into()), e)
}
