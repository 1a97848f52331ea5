//! Cypher statements for the graph backends, in the subset that both Neo4j and
//! FalkorDB run (see docs/GRAPH.md). Parameters are `$name`; every read and
//! write is batched with `UNWIND`, one statement per call.
//!
//! Model: `(:User {id})-[:HAS_FACT]->(:Fact {id, user_id})-[:MENTIONS]->(:Entity {user_id, name})`.
//! Entities are per user, so no relation ever crosses children.

/// `$user`, `$facts: [{id, entities: [name]}]`.
pub const UPSERT_FACTS: &str = "MERGE (u:User {id: $user}) \
     WITH u UNWIND $facts AS f \
     MERGE (x:Fact {id: f.id}) SET x.user_id = $user \
     MERGE (u)-[:HAS_FACT]->(x) \
     WITH x, f UNWIND f.entities AS e \
     MERGE (n:Entity {user_id: $user, name: e}) \
     MERGE (x)-[:MENTIONS]->(n)";

/// `$user`, `$ids`: one row `(id, related id)` per pair (scalars only: FalkorDB's
/// verbose replies render lists as text).
pub const RELATED: &str = "UNWIND $ids AS id \
     MATCH (f:Fact {id: id})-[:MENTIONS]->(n:Entity)<-[:MENTIONS]-(o:Fact) \
     WHERE f.user_id = $user AND o.user_id = $user AND o.id <> id \
     RETURN DISTINCT id, o.id";

/// `$user`, `$ids`.
pub const DELETE_FACTS: &str =
    "UNWIND $ids AS id MATCH (f:Fact {id: id}) WHERE f.user_id = $user DETACH DELETE f";

/// `$user`: facts, entities and the user node.
pub const DELETE_USER_FACTS: &str = "MATCH (f:Fact) WHERE f.user_id = $user DETACH DELETE f";
pub const DELETE_USER_ENTITIES: &str = "MATCH (n:Entity) WHERE n.user_id = $user DETACH DELETE n";
pub const DELETE_USER_NODE: &str = "MATCH (u:User {id: $user}) DETACH DELETE u";

/// Indexes, created once at start-up (an existing index is not an error).
pub const INDEXES: &[&str] = &[
    "CREATE INDEX FOR (f:Fact) ON (f.id)",
    "CREATE INDEX FOR (f:Fact) ON (f.user_id)",
    "CREATE INDEX FOR (n:Entity) ON (n.user_id, n.name)",
    "CREATE INDEX FOR (u:User) ON (u.id)",
];
