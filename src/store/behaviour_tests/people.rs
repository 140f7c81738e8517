//! People signed in through single sign-on and their personal tokens.

use super::*;

fn person(id: &str, admin: bool, orgs: &[&str], at: i64) -> PersonRecord {
    PersonRecord {
        id: id.into(),
        admin,
        orgs: orgs.iter().map(|o| code(o)).collect(),
        signed_in_at: at,
        address: "192.0.2.7".into(),
    }
}

fn personal(id: &str, person: &str, secret: &str, at: i64) -> PersonalTokenRecord {
    PersonalTokenRecord {
        id: id.into(),
        person: person.into(),
        name: format!("{id} laptop"),
        secret_hash: Sha256::digest(secret.as_bytes()),
        created_at: at,
        expires_at: at + 86_400,
        revoked_at: None,
    }
}

pub(crate) fn people_and_personal_tokens(s: &dyn MetaStore) {
    assert_eq!(s.get_person("jdoe").unwrap(), None);
    // A token needs its person to have signed in.
    assert!(matches!(
        s.create_personal_token(&personal("ptk_1", "jdoe", "s1", 10)),
        Err(StoreError::NotFound(_))
    ));
    let first = person("jdoe", false, &["chemistry", "physics"], 10);
    s.put_person(&first).unwrap();
    assert_eq!(s.get_person("jdoe").unwrap(), Some(first));
    // A later sign-in replaces the roles: a lost group is gone.
    let later = person("jdoe", true, &[], 20);
    s.put_person(&later).unwrap();
    assert_eq!(s.get_person("jdoe").unwrap(), Some(later));

    let one = personal("ptk_1", "jdoe", "s1", 30);
    let two = personal("ptk_2", "jdoe", "s2", 31);
    s.create_personal_token(&two).unwrap();
    s.create_personal_token(&one).unwrap();
    assert!(matches!(
        s.create_personal_token(&personal("ptk_3", "jdoe", "s1", 32)),
        Err(StoreError::Conflict(_))
    ));
    s.put_person(&person("asmith", false, &["physics"], 40))
        .unwrap();
    s.create_personal_token(&personal("ptk_4", "asmith", "s4", 41))
        .unwrap();
    assert_eq!(
        s.list_personal_tokens("jdoe").unwrap(),
        vec![one.clone(), two.clone()]
    );
    assert_eq!(
        s.find_personal_token(&Sha256::digest(b"s2")).unwrap(),
        Some(two)
    );
    assert_eq!(
        s.find_personal_token(&Sha256::digest(b"nope")).unwrap(),
        None
    );
    // Another person cannot revoke it; its own person can, once.
    assert!(!s.revoke_personal_token("asmith", "ptk_1", 50).unwrap());
    assert!(s.revoke_personal_token("jdoe", "ptk_1", 50).unwrap());
    assert!(!s.revoke_personal_token("jdoe", "ptk_1", 51).unwrap());
    let found = s
        .find_personal_token(&Sha256::digest(b"s1"))
        .unwrap()
        .unwrap();
    assert_eq!(found.revoked_at, Some(50));
    assert_eq!(s.list_personal_tokens("asmith").unwrap().len(), 1);
}
