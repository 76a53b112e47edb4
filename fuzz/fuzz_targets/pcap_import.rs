//! Arbitrary bytes as a capture (pcap or pcapng): the whole import runs in
//! memory, with and without --allow-gaps. It must end in tapes that read
//! back cleanly or in an error; any panic, hang or runaway allocation is a
//! bug.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    tcptape::fuzzing::pcap_import(data);
});
