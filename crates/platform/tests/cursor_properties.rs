//! SSE cursors come from clients (`Last-Event-ID`, `?cursor=`): any text decodes to a
//! cursor or `InvalidCursor`, never a panic; every cursor we hand out decodes back.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use proptest::prelude::*;
use switchyard_platform::sse::Cursor;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1024))]

    #[test]
    fn any_text_decodes_or_is_refused(text in ".{0,200}") {
        let _ = Cursor::decode(&text);
    }

    #[test]
    fn base64_of_anything_decodes_or_is_refused(raw in prop::collection::vec(any::<u8>(), 0..64)) {
        let _ = Cursor::decode(&URL_SAFE_NO_PAD.encode(&raw));
    }

    #[test]
    fn near_miss_payloads_decode_or_are_refused(
        version in prop_oneof![Just("c1".to_owned()), "[a-z0-9]{0,3}"],
        seq in prop_oneof![Just(String::new()), "-?[0-9]{1,25}", ".{0,5}"],
        stream_seq in prop_oneof![Just(String::new()), "-?[0-9]{1,25}", ".{0,5}"],
        tail in prop_oneof![Just(String::new()), ":.{0,5}"],
    ) {
        let text = URL_SAFE_NO_PAD.encode(format!("{version}:{seq}:{stream_seq}{tail}"));
        if let Ok(cursor) = Cursor::decode(&text) {
            prop_assert!(cursor.seq > 0 && cursor.stream_seq > 0);
        }
    }

    #[test]
    fn valid_cursors_round_trip(seq in 1u64.., stream_seq in 1u64..) {
        let cursor = Cursor { seq, stream_seq };
        prop_assert_eq!(Cursor::decode(&cursor.encode()), Ok(cursor));
    }
}
