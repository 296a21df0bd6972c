//! IPC frames: the first byte is the number of fds that "arrived" with the datagram, the rest is
//! the datagram. Whatever the header accepts, its payload goes to the catalogue's decoders.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&fds, datagram)) = data.split_first() else {
        return;
    };
    if let Ok((_header, payload)) = ipc::frame::Header::decode(datagram, usize::from(fds)) {
        let _ = ipc::codec::decode::<ipc::msg::setup::ToRole>(payload);
        let _ = ipc::codec::decode::<ipc::msg::admin::Request>(payload);
    }
});
