//! What a queue's consumer reads for each message: the queue's settings, its
//! handler and its parsed destination templates. Replaced as a whole when a
//! reload changes them, so the next message uses the new ones.

use crate::{
    config::{BodyKind, QueueConfig},
    destination::Template,
    handler::Handler,
};

use super::consumer::FIREHOSE;

/// A queue's per-message settings.
#[derive(Debug)]
pub struct QueueRuntime {
    pub config: QueueConfig,
    pub handler: Handler,
    /// `destinations:` with their body kind.
    pub templates: Vec<(Template, BodyKind)>,
    /// `/topic/queues/{name}`.
    pub destination: String,
    /// Whether a template reads the payload, so it is parsed once per message.
    pub uses_payload: bool,
}

impl QueueRuntime {
    /// Builds the runtime of a validated queue configuration.
    ///
    /// # Errors
    ///
    /// A message when the handler or a template cannot be built; validation
    /// normally rules both out.
    pub fn new(config: QueueConfig) -> Result<Self, String> {
        let handler = Handler::new(&config)?;
        let mut templates = Vec::with_capacity(config.destinations.len());
        for destination in &config.destinations {
            let template = Template::parse(&destination.destination).map_err(|error| {
                format!("invalid template {:?}: {error}", destination.destination)
            })?;
            templates.push((template, destination.body));
        }
        Ok(Self {
            destination: format!("{FIREHOSE}/{}", config.name),
            uses_payload: templates.iter().any(|(t, _)| t.uses_payload()),
            templates,
            handler,
            config,
        })
    }
}
