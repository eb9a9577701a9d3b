//! SSE cursors come from clients (`Last-Event-ID`, `?cursor=`): any text parses to a
//! cursor or `InvalidCursor`, never a panic; every cursor we hand out decodes back for
//! its own run, and for no other run.
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use switchyard_platform::sse::{Cursor, InvalidCursor, ParsedCursor, RunTag};
use uuid::Uuid;

fn tag(id: u128) -> RunTag {
    RunTag::of(&Uuid::from_u128(id))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_text_parses_or_is_refused(text in ".{0,200}", run in any::<u128>()) {
        let _ = Cursor::parse(&text, &tag(run));
    }

    #[test]
    fn base64_of_anything_parses_or_is_refused(
        raw in prop::collection::vec(any::<u8>(), 0..96),
        run in any::<u128>(),
    ) {
        let _ = Cursor::parse(&URL_SAFE_NO_PAD.encode(&raw), &tag(run));
    }

    #[test]
    fn near_miss_payloads_parse_or_are_refused(
        version in prop_oneof![Just("c1".to_owned()), Just("c2".to_owned()), "[a-z0-9]{0,3}"],
        seq in prop_oneof![Just(String::new()), "-?[0-9]{1,25}", ".{0,5}"],
        stream_seq in prop_oneof![Just(String::new()), "-?[0-9]{1,25}", ".{0,5}"],
        tail in prop_oneof![Just(String::new()), ":.{0,5}", ":[0-9a-f]{16}", ":[0-9a-f]{16}:.{0,3}"],
        run in any::<u128>(),
    ) {
        let text = URL_SAFE_NO_PAD.encode(format!("{version}:{seq}:{stream_seq}{tail}"));
        if let Ok(ParsedCursor::Run(cursor) | ParsedCursor::Legacy(cursor)) =
            Cursor::parse(&text, &tag(run))
        {
            prop_assert!(cursor.seq > 0 && cursor.stream_seq > 0);
        }
    }

    #[test]
    fn valid_cursors_round_trip(seq in 1u64.., stream_seq in 1u64.., run in any::<u128>()) {
        let cursor = Cursor { seq, stream_seq };
        let text = cursor.encode(&tag(run));
        prop_assert_eq!(Cursor::decode(&text, &tag(run)), Ok(cursor));
        prop_assert_eq!(Cursor::parse(&text, &tag(run)), Ok(ParsedCursor::Run(cursor)));
    }

    #[test]
    fn a_cursor_never_resumes_another_run(
        seq in 1u64..,
        stream_seq in 1u64..,
        run in any::<u128>(),
        other in any::<u128>(),
    ) {
        prop_assume!(run != other);
        let text = Cursor { seq, stream_seq }.encode(&tag(run));
        prop_assert_eq!(Cursor::parse(&text, &tag(other)), Err(InvalidCursor));
    }
}
