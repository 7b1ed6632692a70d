//! Module lifecycle through real guests: references are released whichever way a module ends
//! (cleanup, trap, drop), ids are private to the modules that registered them, and a trapping
//! module does not disturb the others.

use modelhost::runtime::RuntimeError;
use modelhost_tests::{MINILM, code, guests, probe, real_runtime, start};
use serde_json::json;

fn settings_registering(id: &str, keep_on_cleanup: bool) -> String {
    json!({"register": {id: {"model_type": "embedding", "name": MINILM, "dimension": 384}},
           "keep_on_cleanup": keep_on_cleanup})
    .to_string()
}

fn references_of(runtime: &modelhost::runtime::Runtime, module: &str) -> u32 {
    runtime
        .manager()
        .status()
        .module_references
        .iter()
        .filter(|r| r.module_id == module)
        .map(|r| r.reference_count)
        .sum()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_releases_the_module_references_and_spares_other_modules() {
    let runtime = real_runtime();
    let settings = settings_registering("shared", false);
    let (_, healthy) = probe(&runtime, "healthy", &settings, &[]).await.unwrap();
    let mut doomed = start(
        &runtime,
        guests::PROBE,
        "doomed",
        &settings,
        b"{\"op\":\"trap\"}\n".to_vec(),
    )
    .await
    .unwrap();
    assert_eq!(references_of(&runtime, doomed.id().as_str()), 1);
    let err = doomed.run().await.unwrap_err();
    assert!(
        matches!(err, RuntimeError::Trap { export: "run", .. }),
        "{err}"
    );
    assert_eq!(references_of(&runtime, doomed.id().as_str()), 0);
    assert!(matches!(
        doomed.run().await,
        Err(RuntimeError::Stopped { .. })
    ));

    // The healthy module still holds its reference, and a new module still gets embeddings.
    assert_eq!(references_of(&runtime, healthy.id().as_str()), 1);
    let commands = [json!({"op": "embed", "id": "shared", "texts": ["still here"]})];
    let (replies, _) = probe(&runtime, "after", &settings, &commands)
        .await
        .unwrap();
    assert_eq!(code(&replies[0]), "ok");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_trap_during_initialize_releases_what_was_registered() {
    let runtime = real_runtime();
    let settings =
        json!({"register": {"x": {"model_type": "embedding", "name": MINILM}}, "trap": true});
    let err = start(
        &runtime,
        guests::PROBE,
        "fragile",
        &settings.to_string(),
        vec![],
    )
    .await
    .err()
    .unwrap();
    let err = err.downcast::<RuntimeError>().unwrap();
    assert!(
        matches!(
            err,
            RuntimeError::Trap {
                export: "initialize",
                ..
            }
        ),
        "{err}"
    );
    assert!(runtime.manager().status().loaded_models.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn cleanup_and_drop_release_references_the_module_forgot() {
    let runtime = real_runtime();
    let (_, mut forgetful) = probe(&runtime, "forgetful", &settings_registering("a", true), &[])
        .await
        .unwrap();
    assert_eq!(references_of(&runtime, forgetful.id().as_str()), 1);
    forgetful.cleanup().await.unwrap();
    assert_eq!(references_of(&runtime, forgetful.id().as_str()), 0);

    let (_, dropped) = probe(&runtime, "dropped", &settings_registering("b", true), &[])
        .await
        .unwrap();
    let id = dropped.id().to_string();
    assert_eq!(references_of(&runtime, &id), 1);
    drop(dropped);
    assert_eq!(references_of(&runtime, &id), 0);
    assert!(runtime.manager().status().loaded_models.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn ids_are_private_to_the_modules_that_registered_them() {
    let runtime = real_runtime();
    let (_, owner) = probe(&runtime, "owner", &settings_registering("mine", false), &[])
        .await
        .unwrap();
    let commands = [
        json!({"op": "embed", "id": "mine", "texts": ["x"]}),
        json!({"op": "release", "id": "mine"}),
        json!({"op": "status"}),
    ];
    let (replies, _) = probe(&runtime, "thief", "", &commands).await.unwrap();
    assert_eq!(code(&replies[0]), "not-registered");
    assert_eq!(code(&replies[1]), "not-registered");
    assert_eq!(
        replies[2]["ok"]["loaded_models"]["mine"]["reference_count"],
        1
    );
    assert_eq!(references_of(&runtime, owner.id().as_str()), 1);
}
