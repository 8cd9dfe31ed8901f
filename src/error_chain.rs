//! Prints an error with all of its causes, for log fields.

use std::fmt;

/// Displays an error followed by each `source`, separated by ": ".
#[derive(Debug)]
pub struct ErrorChain<'a>(pub &'a (dyn std::error::Error + 'static));

impl fmt::Display for ErrorChain<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut text = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let cause_text = cause.to_string();
            // Many errors repeat their cause in their own message; print it once.
            if !text.ends_with(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        f.write_str(&text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] std::io::Error);

    #[derive(Debug, thiserror::Error)]
    #[error("wrapper: {0}")]
    struct Repeating(#[source] std::io::Error);

    #[test]
    fn chain_lists_each_cause_once() {
        let io = || std::io::Error::other("refused");
        assert_eq!(ErrorChain(&Outer(io())).to_string(), "outer: refused");
        assert_eq!(ErrorChain(&Repeating(io())).to_string(), "wrapper: refused");
    }
}
