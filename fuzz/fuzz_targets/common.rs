//! What every target does with a body: every endpoint's parser (and signed-part parser) answers Ok or
//! Err, never panics or hangs; and whatever a parser accepts goes through the BSON writer and reads back
//! as it was written.

use mmo_actors::callback::Delivery;
use mmo_actors::providers::{by_slug, SignedPart};
use mmo_actors::store::{callback_document, recorded};

pub fn every_endpoint(slug: &str, body: &[u8]) {
    let provider = by_slug(slug).expect("registered provider");
    let delivery = Delivery::new(chrono::Utc::now());
    for endpoint in provider.endpoints() {
        let parsed = [
            provider.parse(endpoint.callback_type, body),
            provider.parse_signed(endpoint.callback_type, body, SignedPart::Field("transaction")),
        ];
        for callback in parsed.into_iter().flatten() {
            let document = callback_document(&callback, &delivery);
            let (read, read_delivery) = recorded(&document).expect("a written callback reads back");
            assert_eq!(read.provider_transaction_id, callback.provider_transaction_id);
            assert_eq!(read.status, callback.status);
            assert_eq!(read_delivery.id, delivery.id);
        }
    }
}
