//! openraft's RPCs carried as `RRQ`/`RRS` peer messages over the cluster
//! links, matched by request number; a request unanswered within its
//! time-to-live is reported to openraft as `Unreachable` (it retries).

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{InstallSnapshotError, NetworkError, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{AnyError, BasicNode};

use super::{NodeId, RaftNode, RaftRequest, RaftResponse, TypeConfig};

/// Makes a client per peer (the peer's node name is `BasicNode::addr`).
pub struct Network {
    pub(super) node: Arc<RaftNode>,
}

/// RPCs to one peer.
pub struct Client {
    node: Arc<RaftNode>,
    target: NodeId,
    name: String,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = Client;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Client {
        Client {
            node: Arc::clone(&self.node),
            target,
            name: node.addr.clone(),
        }
    }
}

type Rpc<T, E = openraft::error::Infallible> =
    Result<T, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>;

impl Client {
    async fn call(&self, request: RaftRequest, ttl: Duration) -> Result<RaftResponse, Unreachable> {
        self.node
            .call(&self.name, request, ttl)
            .await
            .map_err(|why| Unreachable::new(&AnyError::error(why)))
    }

    // openraft's trait fixes this error type, large as it is.
    #[allow(clippy::result_large_err)]
    fn remote<T, E>(&self, result: Result<T, RaftError<NodeId, E>>) -> Rpc<T, E>
    where
        E: std::error::Error,
    {
        result.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
    }
}

fn mismatch<E: std::error::Error>() -> RPCError<NodeId, BasicNode, RaftError<NodeId, E>> {
    RPCError::Network(NetworkError::new(&AnyError::error("mismatched raft reply")))
}

impl RaftNetwork<TypeConfig> for Client {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<AppendEntriesResponse<NodeId>> {
        match self
            .call(RaftRequest::Append(rpc), option.hard_ttl())
            .await?
        {
            RaftResponse::Append(result) => self.remote(result),
            _ => Err(mismatch()),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Rpc<InstallSnapshotResponse<NodeId>, InstallSnapshotError> {
        match self
            .call(RaftRequest::Snapshot(rpc), option.hard_ttl())
            .await?
        {
            RaftResponse::Snapshot(result) => self.remote(result),
            _ => Err(mismatch()),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Rpc<VoteResponse<NodeId>> {
        match self.call(RaftRequest::Vote(rpc), option.hard_ttl()).await? {
            RaftResponse::Vote(result) => self.remote(result),
            _ => Err(mismatch()),
        }
    }
}
