//! Every wire type a service decodes from NATS survives arbitrary bytes and arbitrary
//! JSON: decoding answers `Err`, it never panics.
use proptest::prelude::*;
use serde_json::Value;
use switchyard_contracts::api::{HumanLoopReplyRequest, RegisterAppRequest, StartRunRequest};
use switchyard_contracts::control::{ControlReply, ControlRequest};
use switchyard_contracts::dispatch::{DispatchReply, DispatchRequest};
use switchyard_contracts::presence::ExecutorPresence;
use switchyard_contracts::principals::{
    CreatePrincipalRequest, PrincipalChanged, ResolveTokenRequest, SetPrincipalAppsRequest,
    SetPrincipalRoleRequest,
};
use switchyard_contracts::{RunCommand, RunEvent};

/// Any JSON value, nested a few levels, with keys that sometimes hit real field names
/// so the decoders get past their first check.
fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".*".prop_map(Value::String),
        prop_oneof![
            Just("scripted"),
            Just("run.completed"),
            Just("stop"),
            Just("human_loop_reply"),
            Just("00000000-0000-7000-8000-000000000000"),
            Just("viewer"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::btree_map(key(), inner, 0..8)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-zA-Z_]{0,12}",
        prop_oneof![
            Just("runId"),
            Just("provider"),
            Just("prompt"),
            Just("action"),
            Just("command"),
            Just("position"),
            Just("type"),
            Just("seq"),
            Just("nextSeq"),
            Just("lastStreamSeq"),
            Just("providerOptions"),
            Just("decision"),
            Just("executorId"),
            Just("principalId"),
            Just("role"),
            Just("apps"),
        ]
        .prop_map(str::to_owned),
    ]
}

fn decode_all(bytes: &[u8]) {
    let _ = serde_json::from_slice::<RunCommand>(bytes);
    let _ = serde_json::from_slice::<ControlRequest>(bytes);
    let _ = serde_json::from_slice::<ControlReply>(bytes);
    let _ = serde_json::from_slice::<DispatchRequest>(bytes);
    let _ = serde_json::from_slice::<DispatchReply>(bytes);
    let _ = serde_json::from_slice::<RunEvent>(bytes);
    let _ = serde_json::from_slice::<ExecutorPresence>(bytes);
    let _ = serde_json::from_slice::<StartRunRequest>(bytes);
    let _ = serde_json::from_slice::<RegisterAppRequest>(bytes);
    let _ = serde_json::from_slice::<HumanLoopReplyRequest>(bytes);
    let _ = serde_json::from_slice::<PrincipalChanged>(bytes);
    let _ = serde_json::from_slice::<CreatePrincipalRequest>(bytes);
    let _ = serde_json::from_slice::<SetPrincipalRoleRequest>(bytes);
    let _ = serde_json::from_slice::<SetPrincipalAppsRequest>(bytes);
    let _ = serde_json::from_slice::<ResolveTokenRequest>(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        decode_all(&bytes);
    }

    #[test]
    fn arbitrary_json_never_panics(value in json()) {
        decode_all(&serde_json::to_vec(&value).unwrap());
    }
}

#[test]
fn deeply_nested_json_is_refused_not_a_stack_overflow() {
    let depth = 100_000;
    let mut text = "[".repeat(depth);
    text.push_str(&"]".repeat(depth));
    decode_all(text.as_bytes());
    let mut text = "{\"command\":".repeat(depth);
    text.push_str("null");
    text.push_str(&"}".repeat(depth));
    decode_all(text.as_bytes());
    assert!(serde_json::from_str::<RunCommand>(&text).is_err());
}
