use std::time::Duration;

use super::*;

fn no_env(_: &str) -> Option<String> {
    None
}

fn parse_ok(text: &str) -> Config {
    match parse("test.yaml", text, no_env) {
        Ok(config) => config,
        Err(err) => panic!("config rejected: {err}"),
    }
}

#[test]
fn example_config_is_valid() {
    let env = |name: &str| (name == JWT_SECRET_ENV).then(|| "test-secret".to_string());
    let config = match parse(
        "config.example.yaml",
        include_str!("../../config.example.yaml"),
        env,
    ) {
        Ok(config) => config,
        Err(err) => panic!("example rejected: {err}"),
    };
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:1337");
    assert_eq!(config.admin.listen.to_string(), "127.0.0.1:9464");
    assert_eq!(config.rabbitmq.exchange, "tgm.events");
    assert_eq!(config.rabbitmq.url, "amqp://guest:guest@127.0.0.1:5672/%2f");
    let queues: Vec<_> = config
        .queues
        .iter()
        .map(|q| (q.value.name.as_str(), q.value.routing_key.0.clone()))
        .collect();
    assert_eq!(
        queues,
        [
            ("tgm_iot", vec!["tgm.iot".to_string()]),
            ("tgm_notifications", vec!["tgm.notifications".to_string()]),
            ("tgm_calendar", vec!["tgm.calendar".to_string()]),
            ("tgm_erp_sync", vec!["tgm.erp.#".to_string()]),
            ("tgm_entities", vec!["tgm.entity.#".to_string()]),
            ("tgm_webhooks", vec!["tgm.webhook.#".to_string()]),
        ]
    );
    let handlers: Vec<_> = config
        .queues
        .iter()
        .map(|q| q.value.handler.as_str())
        .collect();
    assert_eq!(
        handlers,
        [
            "iot",
            "notification",
            "notification",
            "erp",
            "entity",
            "webhook"
        ]
    );
    assert!(!config.queues[5].value.enabled);
    assert_eq!(
        config
            .auth
            .jwt
            .as_ref()
            .unwrap()
            .keys
            .secret
            .as_ref()
            .unwrap()
            .0
            .as_ref(),
        b"test-secret"
    );
}

#[test]
fn example_config_needs_the_jwt_secret() {
    let err = parse(
        "config.example.yaml",
        include_str!("../../config.example.yaml"),
        no_env,
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(text.contains("STOMPBRIDGE_JWT_SECRET"), "{text}");
}

#[test]
fn empty_file_uses_defaults() {
    let config = parse_ok("{}");
    assert_eq!(config.server.websocket_path, "/ws-raw");
    assert_eq!(config.server.sockjs.paths, ["/ws", "/ws/chat"]);
    assert_eq!(config.stomp.heart_beat.send, Duration::from_secs(10));
    assert!(config.queues.is_empty());
}

#[test]
fn unknown_key_is_named_with_its_location() {
    let err = parse("test.yaml", "server:\n  listn: 127.0.0.1:1\n", no_env).unwrap_err();
    let Error::Parse {
        line,
        column,
        message,
        ..
    } = &err
    else {
        panic!("expected a parse error, got {err}");
    };
    assert!(
        message.contains("listn"),
        "message does not name the key: {message}"
    );
    assert_eq!(*line, 2);
    assert!(*column > 0);
}

#[test]
fn unknown_queue_key_is_rejected() {
    let text = "queues:\n  - name: a\n    routing_key: a\n    handlr: generic\n";
    let err = parse("test.yaml", text, no_env).unwrap_err();
    assert!(err.to_string().contains("handlr"), "{err}");
}

#[test]
fn routing_key_may_be_one_or_a_list() {
    let config = parse_ok(
        "queues:\n  - name: a\n    routing_key: x.y\n  - name: b\n    routing_key: [x.#, y.*]\n",
    );
    assert_eq!(config.queues[0].value.routing_key.0, ["x.y"]);
    assert_eq!(config.queues[1].value.routing_key.0, ["x.#", "y.*"]);
}

#[test]
fn durations_are_human_readable() {
    let config = parse_ok("stomp:\n  heart_beat:\n    send: 1500ms\n    receive: 0s\n");
    assert_eq!(config.stomp.heart_beat.send, Duration::from_millis(1500));
    assert_eq!(config.stomp.heart_beat.receive, Duration::ZERO);
}

#[test]
fn environment_overrides_amqp_url() {
    let env = |name: &str| (name == AMQP_URL_ENV).then(|| "amqp://u:p@10.0.0.1:5672/v".to_string());
    let config = parse("test.yaml", "{}", env).unwrap();
    assert_eq!(config.rabbitmq.url, "amqp://u:p@10.0.0.1:5672/v");
}

#[test]
fn every_problem_is_listed() {
    let text = "\
rabbitmq:
  url: http://nope
  prefetch: 0
limits:
  outbox_frames: 0
queues:
  - name: a/b
    routing_key: x
  - name: ok
    routing_key: []
  - name: ok
    routing_key: y
";
    let err = parse("test.yaml", text, no_env).unwrap_err();
    let Error::Invalid { problems, .. } = &err else {
        panic!("expected validation problems, got {err}");
    };
    let keys: Vec<_> = problems.iter().map(|p| p.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "rabbitmq.url",
            "rabbitmq.prefetch",
            "limits.outbox_frames",
            "queues[0].name",
            "queues[1].routing_key",
            "queues[2].name",
        ]
    );
    let duplicate = &problems[5];
    assert_eq!(duplicate.location.map(|(line, _)| line), Some(11));
    assert!(duplicate.message.contains("duplicate"));
}

#[test]
fn destination_segment_rules() {
    for bad in ["", "a/b", "a*", "#", "a b", "a\tb", "a\u{7}"] {
        assert!(
            validate::destination_segment_problem(bad).is_some(),
            "{bad:?}"
        );
    }
    assert!(validate::destination_segment_problem(&"x".repeat(256)).is_some());
    for good in ["tgm_iot", "a.b-c", "42", "ünïcode"] {
        assert!(
            validate::destination_segment_problem(good).is_none(),
            "{good:?}"
        );
    }
}

#[test]
fn yaml_1_1_boolean_words_stay_strings() {
    let config =
        parse_ok("queues:\n  - name: on\n    routing_key: y\n  - name: b\n    routing_key: 42\n");
    assert_eq!(config.queues[0].value.name, "on");
    assert_eq!(config.queues[0].value.routing_key.0, ["y"]);
    assert_eq!(config.queues[1].value.routing_key.0, ["42"]);
}
