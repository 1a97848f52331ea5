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

/// `$user`, `$ids`: one row `(fact, related)` per pair (scalars only: FalkorDB's
/// verbose replies render lists as text).
pub const RELATED: &str = "UNWIND $ids AS id \
     MATCH (f:Fact {id: id})-[:MENTIONS]->(n:Entity)<-[:MENTIONS]-(o:Fact) \
     WHERE f.user_id = $user AND o.user_id = $user AND o.id <> id \
     RETURN DISTINCT id AS fact, o.id AS related";

/// `$user`, `$ids`.
pub const DELETE_FACTS: &str =
    "UNWIND $ids AS id MATCH (f:Fact {id: id}) WHERE f.user_id = $user DETACH DELETE f";

/// `$user`: entities no fact mentions any more (run after [`DELETE_FACTS`]):
/// an entity's name is words of the deleted fact.
pub const DELETE_ORPHAN_ENTITIES: &str =
    "MATCH (n:Entity {user_id: $user}) WHERE NOT (n)<-[:MENTIONS]-() DELETE n";

/// `$user`: facts, entities and the user node, run in this order.
pub const DELETE_USER: [&str; 3] = [
    "MATCH (f:Fact) WHERE f.user_id = $user DETACH DELETE f",
    "MATCH (n:Entity) WHERE n.user_id = $user DETACH DELETE n",
    "MATCH (u:User {id: $user}) DETACH DELETE u",
];

/// Indexes, created once at start-up (an existing index is not an error).
pub const INDEXES: &[&str] = &[
    "CREATE INDEX FOR (f:Fact) ON (f.id)",
    "CREATE INDEX FOR (f:Fact) ON (f.user_id)",
    "CREATE INDEX FOR (n:Entity) ON (n.user_id, n.name)",
    "CREATE INDEX FOR (u:User) ON (u.id)",
];

/// Groups `(fact, related)` rows of [`RELATED`] per fact, keeping the
/// `per_fact` newest related ids (ids are UUIDv7, so larger is newer).
pub fn group_related(
    rows: impl IntoIterator<Item = (String, String)>,
    per_fact: usize,
) -> std::collections::HashMap<String, Vec<String>> {
    let mut out: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for (fact, related) in rows {
        out.entry(fact).or_default().push(related);
    }
    for list in out.values_mut() {
        list.sort_by(|a, b| b.cmp(a));
        list.truncate(per_fact);
    }
    out
}
