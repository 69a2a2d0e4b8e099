//! The settings file (`--config courier.toml`, or `COURIER_CONFIG`).
//!
//! Every key is a flag's name without its `--`; `_` may stand for `-`. A list is a TOML array.
//! Order, highest first: **flag, environment variable, file, default**. That is done without a
//! second source of truth: the command line is parsed once, then each file key whose flag
//! was given neither on the command line nor in the environment is appended as `--key=value`
//! and the whole is parsed again, so clap checks a file value exactly as it checks a flag.
//! An unknown key stops start-up, as a mistyped flag does.

use super::{Cli, ServeConfig};
use clap::error::ErrorKind;
use clap::parser::ValueSource;
use clap::{ArgAction, CommandFactory, FromArgMatches, Parser};
use std::ffi::OsString;
use std::path::PathBuf;

/// The command line of this process with its settings file applied; exits with a message
/// (as clap does for a bad flag) when either is wrong.
pub fn parse_cli() -> Cli {
    try_parse_from(std::env::args_os()).unwrap_or_else(|e| e.exit())
}

/// `parse_cli` for the given arguments (the first is the program name).
pub fn try_parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<OsString>,
{
    let mut args: Vec<OsString> = args.into_iter().map(Into::into).collect();
    let mut command = Cli::command();
    let matches = command.try_get_matches_from_mut(&args)?;
    let Some((name, sub)) = matches.subcommand() else {
        return Cli::from_arg_matches(&matches);
    };
    let Some(path) = sub.try_get_one::<PathBuf>("config").ok().flatten() else {
        return Cli::from_arg_matches(&matches);
    };
    let fail = |kind, message: String| Cli::command().error(kind, message);
    let text = std::fs::read_to_string(path)
        .map_err(|e| fail(ErrorKind::Io, format!("reading {}: {e}", path.display())))?;
    let table: toml::Table = text
        .parse()
        .map_err(|e| fail(ErrorKind::InvalidValue, format!("{}: {e}", path.display())))?;
    let serve = ServeConfig::command();
    let this = command
        .find_subcommand(name)
        .expect("the parsed subcommand exists");
    let mut extra = Vec::new();
    for (key, value) in &table {
        let flag = key.replace('_', "-");
        let unknown = || {
            fail(
                ErrorKind::UnknownArgument,
                format!("{}: unknown setting `{key}`", path.display()),
            )
        };
        if flag == "config" || !serve.get_arguments().any(|a| a.get_long() == Some(&flag)) {
            return Err(unknown());
        }
        // A server setting that this subcommand (backup, restore) does not take.
        let Some(arg) = this
            .get_arguments()
            .find(|a| a.get_long() == Some(flag.as_str()))
        else {
            continue;
        };
        if matches!(
            sub.value_source(arg.get_id().as_str()),
            Some(ValueSource::CommandLine | ValueSource::EnvVariable)
        ) {
            continue;
        }
        let items: Vec<&toml::Value> = match value {
            toml::Value::Array(items) => items.iter().collect(),
            one => vec![one],
        };
        for item in items {
            let text = match item {
                toml::Value::String(s) => s.clone(),
                toml::Value::Integer(i) => i.to_string(),
                toml::Value::Float(f) => f.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => {
                    return Err(fail(
                        ErrorKind::InvalidValue,
                        format!(
                            "{}: `{key}` must be a string, number, boolean or a list of them",
                            path.display()
                        ),
                    ));
                }
            };
            match arg.get_action() {
                ArgAction::SetTrue => match text.as_str() {
                    "true" => extra.push(format!("--{flag}")),
                    "false" => {}
                    _ => {
                        return Err(fail(
                            ErrorKind::InvalidValue,
                            format!("{}: `{key}` must be true or false", path.display()),
                        ));
                    }
                },
                _ => extra.push(format!("--{flag}={text}")),
            }
        }
    }
    args.extend(extra.into_iter().map(OsString::from));
    Cli::try_parse_from(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Command;

    fn serve(args: &[&str]) -> Result<ServeConfig, clap::Error> {
        let mut all = vec!["courier", "serve"];
        all.extend_from_slice(args);
        try_parse_from(all).map(|cli| match cli.command {
            Command::Serve(config) => *config,
            other => panic!("{other:?}"),
        })
    }

    fn write(text: &str) -> (tempfile::TempDir, String) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("courier.toml");
        std::fs::write(&path, text).unwrap();
        (dir, path.display().to_string())
    }

    #[test]
    fn the_file_sets_what_flags_leave_at_their_default_and_flags_win() {
        let (_dir, path) = write(
            "listen = \"127.0.0.1:4000\"\nmax-body-bytes = 1234\nsecure_cookies = true\n\
             trusted-proxies = [\"10.0.0.0/8\", \"::1/128\"]\nheartbeat = \"3s\"\n\
             log-format = \"json\"\n",
        );
        let config = serve(&["--config", &path]).unwrap();
        assert_eq!(config.listen.to_string(), "127.0.0.1:4000");
        assert_eq!(config.max_body_bytes, 1234);
        assert!(config.secure_cookies);
        assert_eq!(config.trusted_proxies.len(), 2);
        assert_eq!(config.heartbeat, std::time::Duration::from_secs(3));
        assert_eq!(config.log_format, crate::config::LogFormat::Json);

        let config = serve(&["--config", &path, "--max-body-bytes", "99"]).unwrap();
        assert_eq!(config.max_body_bytes, 99, "a flag wins over the file");
        assert_eq!(config.listen.to_string(), "127.0.0.1:4000");
    }

    #[test]
    fn a_mistyped_key_or_a_bad_value_in_the_file_stops_start_up() {
        let (_dir, path) = write("max-body-byte = 5\n");
        let error = serve(&["--config", &path]).unwrap_err().to_string();
        assert!(error.contains("unknown setting `max-body-byte`"), "{error}");
        let (_dir, path) = write("max-body-bytes = \"lots\"\n");
        assert!(serve(&["--config", &path]).is_err());
        let (_dir, path) = write("signup = \"opne\"\n");
        assert!(serve(&["--config", &path]).is_err());
        assert!(serve(&["--config", "/nonexistent/courier.toml"]).is_err());
    }

    #[test]
    fn backup_and_restore_read_the_database_settings_and_ignore_the_rest() {
        let (_dir, path) = write("data-dir = \"/srv/courier\"\nmax-body-bytes = 5\n");
        let cli = try_parse_from(["courier", "backup", "--out", "x.db", "--config", &path]);
        match cli.unwrap().command {
            Command::Backup(args) => {
                assert_eq!(args.database.data_dir, PathBuf::from("/srv/courier"));
                assert_eq!(
                    args.database.sqlite_path().unwrap(),
                    PathBuf::from("/srv/courier/courier.db")
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
