//! `loyalty_platform::Tx` against the emulator: a refusal comes back by the tag of the item
//! whose condition failed, with the item as it was, whatever the order of the items.

use aws_sdk_dynamodb::types::{
    AttributeDefinition, AttributeValue, BillingMode, KeySchemaElement, KeyType, Put,
    ScalarAttributeType,
};
use loyalty_platform::Tx;
use loyalty_tests::{sdk_config, unique_name};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    FreshTaken,
    SeenBefore,
}

fn s(value: &str) -> AttributeValue {
    AttributeValue::S(value.to_string())
}

async fn fresh_table(db: &aws_sdk_dynamodb::Client) -> String {
    let name = unique_name("tx");
    let attribute = |name: &str| {
        AttributeDefinition::builder()
            .attribute_name(name)
            .attribute_type(ScalarAttributeType::S)
            .build()
            .unwrap()
    };
    let key_element = |name: &str, key_type| {
        KeySchemaElement::builder()
            .attribute_name(name)
            .key_type(key_type)
            .build()
            .unwrap()
    };
    db.create_table()
        .table_name(&name)
        .billing_mode(BillingMode::PayPerRequest)
        .attribute_definitions(attribute("pk"))
        .attribute_definitions(attribute("sk"))
        .key_schema(key_element("pk", KeyType::Hash))
        .key_schema(key_element("sk", KeyType::Range))
        .send()
        .await
        .expect("create table");
    name
}

fn put_new(table: &str, pk: &str, note: &str) -> aws_sdk_dynamodb::types::builders::PutBuilder {
    Put::builder()
        .table_name(table)
        .item("pk", s(pk))
        .item("sk", s("ITEM"))
        .item("note", s(note))
        .condition_expression("attribute_not_exists(pk)")
}

#[tokio::test]
async fn a_refused_second_item_comes_back_by_its_tag_with_the_old_item_in_either_order() {
    let db = aws_sdk_dynamodb::Client::new(&sdk_config().await);
    let table = fresh_table(&db).await;
    let mut first = Tx::new();
    first
        .put(put_new(&table, "SEEN", "the first"), Refusal::SeenBefore)
        .unwrap();
    first.commit(&db, "seed").await.unwrap().unwrap();

    for (i, seen_last) in [true, false].into_iter().enumerate() {
        let fresh = format!("FRESH#{i}");
        let mut tx = Tx::new();
        if seen_last {
            tx.put(put_new(&table, &fresh, "new"), Refusal::FreshTaken)
                .unwrap();
            tx.put(put_new(&table, "SEEN", "the second"), Refusal::SeenBefore)
                .unwrap();
        } else {
            tx.put(put_new(&table, "SEEN", "the second"), Refusal::SeenBefore)
                .unwrap();
            tx.put(put_new(&table, &fresh, "new"), Refusal::FreshTaken)
                .unwrap();
        }

        let refused = tx.commit(&db, "test").await.unwrap().unwrap_err();

        assert_eq!(refused.tags().collect::<Vec<_>>(), [&Refusal::SeenBefore]);
        assert!(!refused.contains(&Refusal::FreshTaken));
        let old = refused.get(&Refusal::SeenBefore).expect("the old item");
        assert_eq!(old.get("note"), Some(&s("the first")));
        // A cancelled transaction writes nothing, so the fresh item is still free.
        let fresh_item = db
            .get_item()
            .table_name(&table)
            .key("pk", s(&fresh))
            .key("sk", s("ITEM"))
            .consistent_read(true)
            .send()
            .await
            .unwrap();
        assert!(fresh_item.item.is_none(), "seen last: {seen_last}");
    }
}
