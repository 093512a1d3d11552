//! The OpenAPI document: valid OpenAPI 3.1 for a real validator, describing every route the service
//! serves — and every route it describes is served.

use std::collections::BTreeSet;

use actix_web::http::{Method, StatusCode};
use mmo_webhooks::routes::served;

use crate::helpers::spawn_app;

/// The concrete path a request can use for a pattern (`{name}` filled in).
fn concrete(pattern: &str) -> String {
    pattern
        .split('/')
        .map(|segment| {
            if segment.starts_with('{') {
                "x"
            } else {
                segment
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[actix_web::test]
async fn the_openapi_document_is_valid_and_describes_every_route() {
    let app = spawn_app().await;
    let reply = app.get("/openapi.json", None).await;
    assert_eq!(reply.status, StatusCode::OK);
    let document = reply.body;
    assert_eq!(document["openapi"], "3.1.0");

    // A real validator (openapi-spec-validator, installed by scripts/test.sh under .tools/validator).
    let file = std::env::temp_dir().join(format!(
        "mmo-openapi-{}.json",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&file, document.to_string()).unwrap();
    let validator = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(".tools/validator");
    let output = std::process::Command::new("python3")
        .env("PYTHONPATH", &validator)
        .args([
            "-c",
            "import sys\n\
             from openapi_spec_validator import validate\n\
             from openapi_spec_validator.readers import read_from_filename\n\
             spec, _ = read_from_filename(sys.argv[1])\n\
             validate(spec)\n\
             print('valid')",
        ])
        .arg(&file)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "the validator refused the document (is it installed? scripts/test.sh installs it): {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );

    let described: BTreeSet<(String, String)> = document["paths"]
        .as_object()
        .unwrap()
        .iter()
        .flat_map(|(path, item)| {
            item.as_object()
                .unwrap()
                .keys()
                .map(|method| (method.to_uppercase(), path.clone()))
                .collect::<Vec<_>>()
        })
        .collect();
    let routes: BTreeSet<(String, String)> = served()
        .into_iter()
        .map(|route| (route.method.to_owned(), route.path))
        .collect();
    let undescribed: Vec<_> = routes.difference(&described).collect();
    assert!(
        undescribed.is_empty(),
        "served but not described: {undescribed:?}"
    );
    let unserved: Vec<_> = described.difference(&routes).collect();
    assert!(
        unserved.is_empty(),
        "described but not in the served list: {unserved:?}"
    );

    // And the service answers each of them: anything but its "No such endpoint".
    for (method, path) in &described {
        let method = Method::from_bytes(method.as_bytes()).unwrap();
        let reply = app
            .request(method.clone(), &concrete(path), Vec::new(), &[])
            .await;
        let unknown =
            reply.status == StatusCode::NOT_FOUND && reply.body["message"] == "No such endpoint";
        assert!(!unknown, "{method} {path} is described but not served");
    }
}
