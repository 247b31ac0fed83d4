//! The port contracts against the DynamoDB adapters on the emulator. The same cases run on
//! the memory adapters in `tests/tests/memory/`.

mod claims {
    loyalty_tests::claim_store_contract!(loyalty_tests::contract::claims::dynamo);
}

mod participants {
    loyalty_tests::participant_store_contract!(loyalty_tests::contract::participants::dynamo);
}

mod passcodes {
    loyalty_tests::passcodes_contract!(loyalty_tests::contract::participants::dynamo);
}

mod cashback {
    loyalty_tests::cashback_store_contract!(loyalty_tests::contract::cashback::dynamo);
}

mod actions {
    loyalty_tests::action_store_contract!(loyalty_tests::contract::actions::dynamo);
}

mod sellin {
    loyalty_tests::sell_in_store_contract!(loyalty_tests::contract::sellin::dynamo);
}

mod reviews {
    loyalty_tests::review_store_contract!(loyalty_tests::contract::reviews::dynamo);
}

mod challenges {
    loyalty_tests::challenge_store_contract!(loyalty_tests::contract::challenges::dynamo);
}

mod settings {
    loyalty_tests::earning_settings_contract!(loyalty_tests::contract::settings::dynamo);
}

mod answers {
    loyalty_tests::answer_store_contract!(loyalty_tests::contract::answers::dynamo);
}

mod ledger_reader {
    loyalty_tests::ledger_reader_contract!(loyalty_tests::contract::ledger_reader::dynamo);
}

mod batches {
    loyalty_tests::batch_store_contract!(loyalty_tests::contract::batches::dynamo_batches);
    loyalty_tests::job_queue_contract!(loyalty_tests::contract::batches::sqs_jobs);
    loyalty_tests::exports_contract!(loyalty_tests::contract::batches::s3_exports);
}
