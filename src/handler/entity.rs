//! The `entity` handler: validates entity-change events and publishes them to
//! `/topic/entities` and `/topic/entities/{resourceName}`.
//!
//! The body must be a JSON object with `resourceName` (a destination-safe
//! string), `action` (`created`, `updated` or `deleted`) and `entityId`, and may
//! carry `timestamp` and `data`. Clients receive exactly
//! `{"resourceName", "action", "entityId", "timestamp", "data"}`: a missing
//! timestamp is filled in, and `data` is `null` on delete.

use serde_json::{Map, Value};

use super::{Failure, Incoming, Outcome, Publication, json_object, payload_of};
use crate::config::destination_segment_problem;

/// Destination of every entity change.
pub const ENTITIES: &str = "/topic/entities";

pub(super) fn handle(message: &Incoming<'_>) -> Result<Outcome, Failure> {
    let mut event = json_object(message.body)?;
    let resource = match event.get("resourceName") {
        Some(Value::String(name)) => name.clone(),
        Some(_) => return Err(Failure::invalid("resourceName must be a string")),
        None => return Err(Failure::invalid("resourceName is missing")),
    };
    if let Some(problem) = destination_segment_problem(&resource) {
        return Err(Failure::invalid(format!("resourceName {problem}")));
    }
    let action = match event.get("action").and_then(Value::as_str) {
        Some(action @ ("created" | "updated" | "deleted")) => action.to_owned(),
        _ => {
            return Err(Failure::invalid(
                "action must be created, updated or deleted",
            ));
        }
    };
    let entity_id = match event.remove("entityId") {
        Some(id @ (Value::Number(_) | Value::String(_))) => id,
        _ => return Err(Failure::invalid("entityId must be a number or a string")),
    };
    let timestamp = match event.remove("timestamp") {
        Some(Value::String(at)) => Value::String(at),
        None | Some(Value::Null) => Value::String(message.timestamp.to_owned()),
        Some(_) => return Err(Failure::invalid("timestamp must be a string")),
    };
    let data = match action.as_str() {
        "deleted" => Value::Null,
        _ => event.remove("data").unwrap_or(Value::Null),
    };

    let mut change = Map::new();
    change.insert("resourceName".into(), Value::String(resource.clone()));
    change.insert("action".into(), Value::String(action));
    change.insert("entityId".into(), entity_id);
    change.insert("timestamp".into(), timestamp);
    change.insert("data".into(), data);
    let payload = payload_of(&change);
    let body: bytes::Bytes = payload.json.get().as_bytes().to_vec().into();
    let extra = vec![
        Publication {
            destination: ENTITIES.into(),
            body: body.clone(),
            user: None,
        },
        Publication {
            destination: format!("{ENTITIES}/{resource}"),
            body,
            user: None,
        },
    ];
    Ok(Outcome::Publish { payload, extra })
}

#[cfg(test)]
mod tests {
    use lapin::BasicProperties;
    use serde_json::json;

    use super::*;

    fn run(body: &Value) -> Result<(Value, Vec<Publication>), Failure> {
        let properties = BasicProperties::default();
        let body = body.to_string();
        let message = Incoming {
            queue: "q",
            routing_key: "tgm.entity.inspections",
            body: body.as_bytes(),
            properties: &properties,
            redelivered: false,
            timestamp: "2026-02-17T14:30:00.123Z",
        };
        match handle(&message)? {
            Outcome::Publish { payload, extra } => {
                Ok((serde_json::from_str(payload.json.get()).unwrap(), extra))
            }
            Outcome::Drop(reason) => panic!("dropped: {reason:?}"),
        }
    }

    #[test]
    fn change_has_the_guide_fields_in_order() {
        let (change, extra) = run(&json!({
            "action": "created", "extra": 1, "data": {"id": 42, "status": "PENDING"},
            "entityId": 42, "resourceName": "inspections", "timestamp": "2026-02-17T14:30:00.123"
        }))
        .unwrap();
        let keys: Vec<_> = change.as_object().unwrap().keys().cloned().collect();
        assert_eq!(
            keys,
            ["resourceName", "action", "entityId", "timestamp", "data"]
        );
        assert_eq!(change["timestamp"], "2026-02-17T14:30:00.123");
        assert_eq!(change["data"], json!({"id": 42, "status": "PENDING"}));
        let destinations: Vec<_> = extra.iter().map(|p| p.destination.as_str()).collect();
        assert_eq!(
            destinations,
            ["/topic/entities", "/topic/entities/inspections"]
        );
    }

    #[test]
    fn missing_timestamp_is_filled_and_delete_has_null_data() {
        let (change, _) =
            run(&json!({"resourceName": "units", "action": "deleted", "entityId": "7", "data": {"x": 1}})).unwrap();
        assert_eq!(change["timestamp"], "2026-02-17T14:30:00.123Z");
        assert_eq!(change["data"], Value::Null);
    }

    #[test]
    fn invalid_changes_fail_permanently() {
        for body in [
            json!({"action": "created", "entityId": 1}),
            json!({"resourceName": "a/b", "action": "created", "entityId": 1}),
            json!({"resourceName": "units", "action": "archived", "entityId": 1}),
            json!({"resourceName": "units", "action": "created"}),
            json!({"resourceName": "units", "action": "created", "entityId": null}),
            json!({"resourceName": "units", "action": "created", "entityId": 1, "timestamp": 5}),
            json!([1]),
        ] {
            let failure = run(&body).unwrap_err();
            assert!(!failure.is_transient(), "{body}");
        }
    }
}
