//! The README's "Who may do what" table, read as the one source of truth the walk follows,
//! and the check that it names exactly the operations of `/v1/openapi.json`, each with the
//! scope the document names.

use std::collections::BTreeMap;

use serde_json::Value;
use shoal_protocol::keys::Scope;

/// Whether another org's key gets a different answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrgBound {
    /// Another org's thing is a 404 and left out of lists; what is made is the key's org's.
    Yes,
    /// Fleet-wide: every org gets the same answer.
    No,
    /// A read or operate key sees its own org's; an admin key every org's.
    OwnUnlessAdmin,
}

/// One row of the table.
#[derive(Debug, Clone)]
pub struct Row {
    pub method: String,
    /// The path as the OpenAPI document spells it, `{id}` and all.
    pub path: String,
    /// `None`: no API key is needed (or, for `POST /v1/costs`, none is taken).
    pub scope: Option<Scope>,
    pub org: OrgBound,
}

impl Row {
    /// `METHOD /path`, as the README writes it.
    pub fn operation(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Whether the route is behind the API key check: every `/v1` route but the document.
    pub fn behind_the_key_check(&self) -> bool {
        self.path.starts_with("/v1/") && self.operation() != DOCUMENT_ROUTE
    }
}

const HEADING: &str = "### Who may do what";

/// The operation the document cannot list: the document itself.
pub const DOCUMENT_ROUTE: &str = "GET /v1/openapi.json";

/// The rows of the table in the repository's README.
pub fn readme_rows() -> Vec<Row> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).expect("reading README.md");
    parse(&readme)
}

/// The rows of the first table under [`HEADING`].
fn parse(readme: &str) -> Vec<Row> {
    let (_, section) = readme
        .split_once(HEADING)
        .unwrap_or_else(|| panic!("README.md has no {HEADING:?} section"));
    let rows: Vec<Row> = section
        .lines()
        .skip_while(|line| !line.starts_with('|'))
        .take_while(|line| line.starts_with('|'))
        .skip(2) // the header and the |---| line
        .map(parse_row)
        .collect();
    assert!(!rows.is_empty(), "the {HEADING:?} table has no rows");
    rows
}

fn parse_row(line: &str) -> Row {
    let cells: Vec<&str> = line
        .trim()
        .trim_matches('|')
        .split('|')
        .map(str::trim)
        .collect();
    let [operation, scope, org] = cells[..] else {
        panic!("a row of the table has three cells: {line}");
    };
    let (method, path) = operation
        .trim_matches('`')
        .split_once(' ')
        .unwrap_or_else(|| panic!("`METHOD /path` in {line}"));
    let scope = match scope {
        "none" => None,
        named => Some(named.parse().unwrap_or_else(|err| panic!("{line}: {err}"))),
    };
    let org = match org {
        "yes" => OrgBound::Yes,
        "no" => OrgBound::No,
        "own org (admin: every org)" => OrgBound::OwnUnlessAdmin,
        other => {
            panic!("{line}: org-bound is yes, no or own org (admin: every org), not {other:?}")
        }
    };
    Row {
        method: method.to_string(),
        path: path.to_string(),
        scope,
        org,
    }
}

/// Every operation of the document with the key scope it names (`None`: no key scope, as
/// for `/health` or the job-token route).
fn document_scopes(document: &Value) -> BTreeMap<String, Option<Scope>> {
    let paths = document["paths"]
        .as_object()
        .expect("the document has paths");
    let mut scopes = BTreeMap::new();
    for (path, item) in paths {
        for method in ["get", "put", "post", "delete"] {
            let Some(operation) = item.get(method) else {
                continue;
            };
            let scope = operation["security"][0]["bearer"][0]
                .as_str()
                .map(|s| s.parse::<Scope>().expect("a scope the document names"));
            scopes.insert(format!("{} {path}", method.to_uppercase()), scope);
        }
    }
    scopes
}

/// Panics unless the rows list each operation of the document once (and the document's
/// own route), no other, each with the scope the document names.
pub fn check_against_document(rows: &[Row], document: &Value) {
    let named = document_scopes(document);
    let mut listed = BTreeMap::new();
    for row in rows {
        let before = listed.insert(row.operation(), row.scope);
        assert!(
            before.is_none(),
            "{} is in the table twice",
            row.operation()
        );
    }
    let missing: Vec<&String> = named
        .keys()
        .filter(|op| !listed.contains_key(*op))
        .collect();
    let extra: Vec<&String> = listed
        .keys()
        .filter(|op| !named.contains_key(*op) && op.as_str() != DOCUMENT_ROUTE)
        .collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "the README table and the OpenAPI document differ: missing from the table {missing:?}, \
         not in the document {extra:?}"
    );
    for (operation, scope) in &named {
        assert_eq!(
            listed[operation], *scope,
            "{operation}: the README names one scope, the OpenAPI document another"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_row_reads_as_method_path_scope_and_org() {
        let rows = parse(
            "### Who may do what\n\ntext\n\n| operation | scope | org-bound |\n|---|---|---|\n\
             | `GET /v1/jobs/{id}` | read | yes |\n| `GET /health` | none | no |\n\nafter\n",
        );
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].operation(), "GET /v1/jobs/{id}");
        assert_eq!(
            (rows[0].scope, rows[0].org),
            (Some(Scope::Read), OrgBound::Yes)
        );
        assert_eq!((rows[1].scope, rows[1].org), (None, OrgBound::No));
    }
}
