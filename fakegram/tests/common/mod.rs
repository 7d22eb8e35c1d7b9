//! The real grammers client, set up from a fake server's credentials the way tgferry
//! sets it up: every data centre's address and key from the session, grammers' retries
//! off, updates not read.

#![allow(dead_code)]

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::sync::Arc;
use std::time::Duration;

use fakegram::Credentials;
use grammers_client::Client;
use grammers_client::sender::{ConnectionParams, InvocationError, NoRetries, SenderPool};
use grammers_client::session::SessionData;
use grammers_client::session::storages::MemorySession;
use grammers_client::session::types::{DcOption, PeerAuth, PeerId, PeerInfo};

/// A connected client; dropping it disconnects.
pub struct TestClient {
    pub client: Client,
    runner: tokio::task::JoinHandle<()>,
}

impl Drop for TestClient {
    fn drop(&mut self) {
        self.client.disconnect();
        self.runner.abort();
    }
}

/// A grammers client for `creds`.
pub fn client(creds: &Credentials) -> TestClient {
    let mut data = SessionData {
        home_dc: creds.home_dc,
        ..SessionData::default()
    };
    for dc in &creds.dcs {
        let SocketAddr::V4(v4) = dc.addr else {
            panic!("the fake listens on IPv4")
        };
        data.dc_options.insert(
            dc.id,
            DcOption {
                id: dc.id,
                ipv4: SocketAddrV4::new(*v4.ip(), v4.port()),
                ipv6: SocketAddrV6::new(Ipv6Addr::LOCALHOST, v4.port(), 0, 0),
                auth_key: Some(dc.key),
            },
        );
    }
    if let Some(u) = creds.user {
        let info = PeerInfo::User {
            id: u.id,
            auth: Some(PeerAuth::from_hash(u.access_hash)),
            bot: Some(u.bot),
            is_self: Some(true),
        };
        data.peer_infos.insert(PeerId::user(u.id).unwrap(), info);
    }
    let session = Arc::new(MemorySession::from(data));
    let params = ConnectionParams {
        retry_policy: Box::new(NoRetries),
        ..ConnectionParams::default()
    };
    let pool = SenderPool::with_configuration(session, creds.api_id, params);
    let client = Client::new(pool.handle);
    drop(pool.updates);
    let runner = tokio::spawn(pool.runner.run());
    TestClient { client, runner }
}

/// Awaits `f`, failing the test after 20 s (no test may hang).
pub async fn bounded<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(20), f)
        .await
        .expect("the fake answered within 20 s")
}

/// The RPC error's name and value, or a description of another failure.
pub fn rpc_name(e: &InvocationError) -> String {
    match e {
        InvocationError::Rpc(r) => match r.value {
            Some(v) => format!("{}_{v}", r.name),
            None => r.name.clone(),
        },
        other => format!("not an RPC error: {other}"),
    }
}

/// `len` bytes of a repeatable pattern seeded by `seed`.
pub fn bytes(seed: u8, len: usize) -> Vec<u8> {
    let mut x = u32::from(seed).wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}
