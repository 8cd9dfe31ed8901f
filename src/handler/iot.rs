//! The `iot` handler: validates sensor readings, computes `alertLevel` from the
//! queue's thresholds when a reading has none, and also publishes each reading
//! to `iot.event_destination` (default `/topic/iot-event`).
//!
//! A reading is a JSON object with `sensorId` (string or number), a numeric
//! `value` and an optional string `alertLevel`. Anything else is a permanent
//! failure.

use serde_json::Value;

use super::{Failure, Incoming, Outcome, Publication, json_object, payload_of};
use crate::config::{IotOptions, ThresholdDirection};

#[derive(Debug)]
pub struct Iot {
    options: IotOptions,
}

impl Iot {
    pub(super) fn new(options: IotOptions) -> Self {
        Self { options }
    }

    pub(super) fn handle(&self, message: &Incoming<'_>) -> Result<Outcome, Failure> {
        let mut reading = json_object(message.body)?;
        match reading.get("sensorId") {
            Some(Value::String(id)) if !id.is_empty() => {}
            Some(Value::Number(_)) => {}
            Some(_) => {
                return Err(Failure::invalid(
                    "sensorId must be a non-empty string or a number",
                ));
            }
            None => return Err(Failure::invalid("sensorId is missing")),
        }
        let value = match reading.get("value") {
            Some(Value::Number(n)) => n.as_f64().unwrap_or(f64::NAN),
            Some(_) => return Err(Failure::invalid("value must be a number")),
            None => return Err(Failure::invalid("value is missing")),
        };
        match reading.get("alertLevel") {
            Some(Value::String(_)) => {}
            Some(Value::Null) | None => {
                if let Some(level) = self.alert_level(value) {
                    reading.insert("alertLevel".into(), Value::from(level));
                }
            }
            Some(_) => return Err(Failure::invalid("alertLevel must be a string")),
        }

        let payload = payload_of(&reading);
        let event = Publication {
            destination: self.options.event_destination.clone(),
            body: payload.json.get().as_bytes().to_vec().into(),
            user: None,
        };
        Ok(Outcome::Publish {
            payload,
            extra: vec![event],
        })
    }

    /// The alert level of `value`: `critical`, `warning` or `normal`, or none
    /// without thresholds.
    fn alert_level(&self, value: f64) -> Option<&'static str> {
        let thresholds = self.options.thresholds?;
        let beyond = |limit: f64| match thresholds.direction {
            ThresholdDirection::Above => value >= limit,
            ThresholdDirection::Below => value <= limit,
        };
        Some(if beyond(thresholds.critical) {
            "critical"
        } else if beyond(thresholds.warning) {
            "warning"
        } else {
            "normal"
        })
    }
}

#[cfg(test)]
mod tests {
    use lapin::BasicProperties;
    use serde_json::json;

    use super::*;
    use crate::config::Thresholds;

    fn handle(options: IotOptions, body: &str) -> Result<(Value, Vec<Publication>), Failure> {
        let properties = BasicProperties::default();
        let message = Incoming {
            queue: "q",
            routing_key: "r",
            body: body.as_bytes(),
            properties: &properties,
            redelivered: false,
            timestamp: "t",
        };
        match Iot::new(options).handle(&message)? {
            Outcome::Publish { payload, extra } => {
                Ok((serde_json::from_str(payload.json.get()).unwrap(), extra))
            }
            Outcome::Drop(reason) => panic!("dropped: {reason:?}"),
        }
    }

    fn with_thresholds(direction: ThresholdDirection, warning: f64, critical: f64) -> IotOptions {
        IotOptions {
            thresholds: Some(Thresholds {
                warning,
                critical,
                direction,
            }),
            ..IotOptions::default()
        }
    }

    #[test]
    fn valid_reading_is_published_to_iot_event() {
        let (payload, extra) = handle(
            IotOptions::default(),
            r#"{"sensorId":123,"value":75.5,"alertLevel":"warning"}"#,
        )
        .unwrap();
        assert_eq!(
            payload,
            json!({"sensorId":123,"value":75.5,"alertLevel":"warning"})
        );
        assert_eq!(extra.len(), 1);
        assert_eq!(extra[0].destination, "/topic/iot-event");
        assert_eq!(
            serde_json::from_slice::<Value>(&extra[0].body).unwrap(),
            payload
        );
    }

    #[test]
    fn thresholds_compute_missing_alert_level() {
        let above = with_thresholds(ThresholdDirection::Above, 70.0, 90.0);
        for (value, level) in [(10.0, "normal"), (70.0, "warning"), (95.0, "critical")] {
            let body = json!({"sensorId": "s1", "value": value}).to_string();
            let (payload, _) = handle(above.clone(), &body).unwrap();
            assert_eq!(payload["alertLevel"], level, "value {value}");
        }
        let below = with_thresholds(ThresholdDirection::Below, 20.0, 5.0);
        let (payload, _) = handle(below, r#"{"sensorId":"s1","value":3}"#).unwrap();
        assert_eq!(payload["alertLevel"], "critical");
    }

    #[test]
    fn given_alert_level_is_kept() {
        let above = with_thresholds(ThresholdDirection::Above, 70.0, 90.0);
        let (payload, _) =
            handle(above, r#"{"sensorId":1,"value":99,"alertLevel":"custom"}"#).unwrap();
        assert_eq!(payload["alertLevel"], "custom");
    }

    #[test]
    fn field_order_is_kept() {
        let (payload, _) = handle(
            IotOptions::default(),
            r#"{"value":1,"zeta":0,"sensorId":2}"#,
        )
        .unwrap();
        let keys: Vec<_> = payload.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys, ["value", "zeta", "sensorId"]);
    }

    #[test]
    fn invalid_readings_fail_permanently() {
        for body in [
            "not json",
            "[1,2]",
            r#"{"value":1}"#,
            r#"{"sensorId":"","value":1}"#,
            r#"{"sensorId":true,"value":1}"#,
            r#"{"sensorId":1}"#,
            r#"{"sensorId":1,"value":"high"}"#,
            r#"{"sensorId":1,"value":1,"alertLevel":3}"#,
        ] {
            let failure = handle(IotOptions::default(), body).unwrap_err();
            assert!(!failure.is_transient(), "{body}");
        }
    }
}
