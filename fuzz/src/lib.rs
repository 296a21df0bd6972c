//! What the request targets share: a datagram goes through the checks a serving role applies to
//! what a peer sends (the frame header against the descriptors that arrived, then the
//! catalogue's decoder), and whatever decodes must encode and decode back to itself.

use std::fmt::Debug;

use serde::Serialize;
use serde::de::DeserializeOwned;

/// The first byte is the number of descriptors that "arrived" with the datagram (0–3); the
/// rest is the datagram.
pub fn request<T: Serialize + DeserializeOwned + PartialEq + Debug>(data: &[u8]) {
    let Some((&fds, datagram)) = data.split_first() else {
        return;
    };
    let Ok((_header, payload)) = ipc::frame::Header::decode(datagram, usize::from(fds % 4)) else {
        return;
    };
    if let Ok(request) = ipc::codec::decode::<T>(payload) {
        let again = ipc::codec::encode(&request).expect("a decoded request encodes");
        let back = ipc::codec::decode::<T>(&again).expect("an encoded request decodes");
        assert_eq!(back, request);
    }
}
