//! Access rules: who may SUBSCRIBE to or SEND to a destination.
//!
//! Rules are tried in order and the first whose pattern matches decides; a
//! rule that says nothing about the action denies it. The configured rules
//! come first, then the defaults (`/topic/**` anyone may subscribe to,
//! `/user/**` authenticated users may subscribe to, `/app/**` authenticated
//! users may send to), and a destination no rule matches is denied. In a
//! pattern `*` matches one segment and `**` any number of segments.

use super::Principal;
use crate::config::{AccessRule, Permission, default_access_rules};

/// What a client asks to do with a destination.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    Subscribe,
    Send,
}

/// The compiled rules.
#[derive(Clone, Debug)]
pub struct AccessRules {
    rules: Vec<Rule>,
}

#[derive(Clone, Debug)]
struct Rule {
    segments: Vec<Segment>,
    subscribe: Permission,
    send: Permission,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Segment {
    Literal(String),
    One,
    Any,
}

/// Why a pattern was rejected when the configuration was loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PatternError {
    #[error("must start with '/'")]
    NotAbsolute,
    #[error("'*' and '**' must be a whole segment")]
    PartialWildcard,
}

// === impl Action ===

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Subscribe => "SUBSCRIBE",
            Action::Send => "SEND",
        }
    }
}

// === impl AccessRules ===

impl AccessRules {
    /// Compiles `configured` followed by the defaults.
    ///
    /// # Errors
    ///
    /// The first pattern that is not valid, with its index.
    pub fn new(configured: &[AccessRule]) -> Result<Self, (usize, PatternError)> {
        let mut rules = Vec::new();
        for (i, rule) in configured
            .iter()
            .chain(default_access_rules().iter())
            .enumerate()
        {
            rules.push(Rule {
                segments: parse(&rule.destination).map_err(|error| (i, error))?,
                subscribe: rule.subscribe.clone().unwrap_or(Permission::Nobody),
                send: rule.send.clone().unwrap_or(Permission::Nobody),
            });
        }
        Ok(Self { rules })
    }

    /// Whether `principal` (`None` when anonymous) may do `action` on `destination`.
    pub fn allows(&self, action: Action, destination: &str, principal: Option<&Principal>) -> bool {
        let segments: Vec<&str> = destination.split('/').skip(1).collect();
        let Some(rule) = self
            .rules
            .iter()
            .find(|rule| matches(&rule.segments, &segments))
        else {
            return false;
        };
        let permission = match action {
            Action::Subscribe => &rule.subscribe,
            Action::Send => &rule.send,
        };
        match (permission, principal) {
            (Permission::Anyone, _) => true,
            (Permission::Nobody, _) | (_, None) => false,
            (Permission::Authenticated, Some(_)) => true,
            (Permission::Roles(roles), Some(principal)) => {
                principal.roles.iter().any(|r| roles.contains(r))
            }
        }
    }
}

/// Parses a pattern into segments. Fails when the pattern is not absolute or a
/// wildcard is part of a segment.
fn parse(pattern: &str) -> Result<Vec<Segment>, PatternError> {
    let rest = pattern.strip_prefix('/').ok_or(PatternError::NotAbsolute)?;
    rest.split('/')
        .map(|segment| match segment {
            "*" => Ok(Segment::One),
            "**" => Ok(Segment::Any),
            s if s.contains('*') => Err(PatternError::PartialWildcard),
            s => Ok(Segment::Literal(s.to_owned())),
        })
        .collect()
}

fn matches(pattern: &[Segment], destination: &[&str]) -> bool {
    match (pattern.first(), destination.first()) {
        (None, None) => true,
        (Some(Segment::Any), _) => {
            // `**` takes zero segments, or one and stays.
            matches(&pattern[1..], destination)
                || (!destination.is_empty() && matches(pattern, &destination[1..]))
        }
        (Some(Segment::One), Some(_)) => matches(&pattern[1..], &destination[1..]),
        (Some(Segment::Literal(literal)), Some(segment)) if literal == segment => {
            matches(&pattern[1..], &destination[1..])
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn principal(roles: &[&str]) -> Principal {
        Principal {
            user: Arc::from("u1"),
            roles: roles.iter().map(|r| r.to_string()).collect(),
            expires_at: None,
        }
    }

    fn rule(
        destination: &str,
        subscribe: Option<Permission>,
        send: Option<Permission>,
    ) -> AccessRule {
        AccessRule {
            destination: destination.into(),
            subscribe,
            send,
        }
    }

    #[test]
    fn defaults_follow_the_specification() {
        let rules = AccessRules::new(&[]).unwrap();
        let user = principal(&[]);
        assert!(rules.allows(Action::Subscribe, "/topic/queues/tgm_iot", None));
        assert!(!rules.allows(Action::Send, "/topic/queues/tgm_iot", Some(&user)));
        assert!(!rules.allows(Action::Subscribe, "/user/queue/notifications", None));
        assert!(rules.allows(Action::Subscribe, "/user/queue/notifications", Some(&user)));
        assert!(!rules.allows(Action::Send, "/app/chat.send", None));
        assert!(rules.allows(Action::Send, "/app/chat.send", Some(&user)));
        assert!(!rules.allows(Action::Subscribe, "/queue/other", Some(&user)));
        assert!(!rules.allows(Action::Subscribe, "/app/chat.send", Some(&user)));
    }

    #[test]
    fn first_matching_rule_wins() {
        let rules = AccessRules::new(&[
            rule(
                "/topic/admin/**",
                Some(Permission::Roles(vec!["admin".into()])),
                None,
            ),
            rule("/topic/public/*", Some(Permission::Nobody), None),
        ])
        .unwrap();
        assert!(!rules.allows(
            Action::Subscribe,
            "/topic/admin/stats",
            Some(&principal(&["ops"]))
        ));
        assert!(rules.allows(
            Action::Subscribe,
            "/topic/admin/stats",
            Some(&principal(&["admin"]))
        ));
        assert!(!rules.allows(Action::Subscribe, "/topic/admin/stats", None));
        assert!(!rules.allows(Action::Subscribe, "/topic/public/x", None));
        // `*` is one segment, so the default rule decides deeper paths.
        assert!(rules.allows(Action::Subscribe, "/topic/public/x/y", None));
    }

    #[test]
    fn double_star_matches_any_depth() {
        let any = parse("/a/**/z").unwrap();
        for (destination, expected) in [
            ("/a/z", true),
            ("/a/b/z", true),
            ("/a/b/c/z", true),
            ("/a/b", false),
        ] {
            let segments: Vec<&str> = destination.split('/').skip(1).collect();
            assert_eq!(matches(&any, &segments), expected, "{destination}");
        }
    }

    #[test]
    fn invalid_patterns_are_rejected() {
        assert_eq!(parse("topic/x"), Err(PatternError::NotAbsolute));
        assert_eq!(parse("/topic/x*"), Err(PatternError::PartialWildcard));
    }
}
