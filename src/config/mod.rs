//! Configuration: loading, environment overrides and validation.
//!
//! [`load`] is the one entry point, used at startup and by `check-config`: read the
//! file, parse it, apply environment overrides, then validate the whole result and
//! report every problem at once.

mod auth;
mod queue;
pub mod reload;
mod schema;
mod validate;

use std::{fmt, path::Path};

pub use auth::*;
pub use queue::*;
pub use schema::*;
pub use validate::{Problem, destination_segment_problem};

/// Environment variable that overrides `rabbitmq.url`, so credentials can stay out
/// of the file.
pub const AMQP_URL_ENV: &str = "STOMPBRIDGE_AMQP_URL";

/// Reason a configuration file was rejected.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        path: String,
        line: u64,
        column: u64,
        message: String,
    },
    #[error("{path}: {} invalid setting(s):\n{}", problems.len(), Listing(problems))]
    Invalid {
        path: String,
        problems: Vec<Problem>,
    },
}

struct Listing<'a>(&'a [Problem]);

impl fmt::Display for Listing<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, problem) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "  {problem}")?;
        }
        Ok(())
    }
}

/// Reads, parses and validates the configuration file at `path`.
///
/// # Errors
///
/// [`Error::Read`] when the file cannot be read, [`Error::Parse`] with line and
/// column for YAML and type errors (unknown keys included), and [`Error::Invalid`]
/// listing every semantic problem.
pub fn load(path: &Path) -> Result<Config, Error> {
    let display = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
        path: display.clone(),
        source,
    })?;
    parse(&display, &text, |name| std::env::var(name).ok())
}

/// Parses and validates configuration text. `env` looks up environment
/// variables, so tests need not touch the process environment.
///
/// # Errors
///
/// As [`load`], without [`Error::Read`].
pub fn parse(
    path: &str,
    text: &str,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Config, Error> {
    // YAML 1.2 booleans only, so a routing key such as `y` or `on` stays a string.
    let options = serde_saphyr::options! { strict_booleans: true };
    let mut config: Config = serde_saphyr::from_str_with_options(text, options).map_err(|err| {
        let location = err.location();
        Error::Parse {
            path: path.to_owned(),
            line: location.map_or(0, |l| l.line()),
            column: location.map_or(0, |l| l.column()),
            message: strip_location(&err.without_snippet().to_string()).to_owned(),
        }
    })?;
    if let Some(url) = env(AMQP_URL_ENV).filter(|url| !url.is_empty()) {
        config.rabbitmq.url = url;
    }
    let mut problems = validate::check(&config);
    problems.extend(validate::resolve_secrets(&mut config, &env));
    if !problems.is_empty() {
        return Err(Error::Invalid {
            path: path.to_owned(),
            problems,
        });
    }
    Ok(config)
}

/// Drops the " at line L, column C" that serde-saphyr appends, since the error
/// shows the position in front.
fn strip_location(message: &str) -> &str {
    match message.rfind(" at line ") {
        Some(at) if message[at..].contains(", column ") => &message[..at],
        _ => message,
    }
}

#[cfg(test)]
mod tests;
