//! Bytes from another node: first as a shared-state message (shoal-state's strict decoder and
//! the merge it feeds), then as a memberlist gossip packet, which is how every such message
//! arrives. Neither may panic, whatever a peer (or anyone who can reach the gossip port) sends.
#![no_main]

use std::net::SocketAddr;
use std::pin::pin;
use std::sync::LazyLock;
use std::task::{Context, Poll, Waker};

use agnostic_lite::tokio::TokioRuntime;
use libfuzzer_sys::fuzz_target;
use memberlist_proto::bytes::{Bytes, BytesMut};
use memberlist_proto::{
    Data, Label, Message, MessagesDecoder, ProtoDecoder, ProtoDecoderError, SecretKey,
};
use smol_str::SmolStr;

/// As `shoal-cluster` configures memberlist: packets labelled with the cluster name and sealed
/// with the cluster key; anything unencrypted is refused. What anyone on the network reaches.
static SEALED: LazyLock<ProtoDecoder> = LazyLock::new(|| {
    let mut decoder = ProtoDecoder::new();
    decoder
        .with_label(Label::try_from("shoal").expect("valid label"))
        .with_encryption(vec![SecretKey::Aes256([1; 32])])
        .with_verify_incoming(true)
        .with_offload_size(usize::MAX);
    decoder
});

/// No label, no key: the checksum, decompression and message layers that a packet reaches
/// once decrypted, i.e. what any holder of the cluster key can make a node parse.
static PLAIN: LazyLock<ProtoDecoder> = LazyLock::new(|| {
    let mut decoder = ProtoDecoder::new();
    decoder.with_offload_size(usize::MAX);
    decoder
});

fuzz_target!(|data: &[u8]| {
    shoal_state::fuzzing::receive(data);
    for decoder in [&*SEALED, &*PLAIN] {
        if let Ok(plain) = decode_now(decoder, data) {
            messages(&plain);
        }
    }
});

/// `ProtoDecoder::decode` is async only to hand large payloads to a blocking thread; with the
/// offload size at its maximum it completes on its first poll, without a runtime.
fn decode_now(decoder: &ProtoDecoder, data: &[u8]) -> Result<Bytes, ProtoDecoderError> {
    let future = pin!(decoder.decode::<TokioRuntime>(BytesMut::from(data)));
    match future.poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(result) => result,
        Poll::Pending => unreachable!("nothing is offloaded, so decoding never waits"),
    }
}

/// Each message of the packet, decoded in full as memberlist's packet handler does, with
/// Shoal's node id and address types.
fn messages(payload: &[u8]) {
    let Ok(decoder) = MessagesDecoder::<SmolStr, SocketAddr, _>::new(payload) else {
        return;
    };
    for msg in decoder.iter() {
        let Ok(msg) = msg else {
            break;
        };
        let _ = Message::<SmolStr, SocketAddr>::from_ref(msg);
    }
}
