//! Tests that need no emulator: the port contracts on the memory adapters, handler tests
//! of functions wired to them (fed from the sample events in `events/`), and use-case paths
//! the handlers cannot reach.
//!
//! `cargo nextest run -p loyalty-tests --test memory`

mod accrual;
mod batch_worker;
mod claim_use_case;
mod code_claim;
mod codes_admin;
mod metrics;
mod participants;
mod partner_webhooks;
mod passcodes;
mod sellin;
mod wallet;

mod contract {
    mod cashback {
        loyalty_tests::cashback_store_contract!(loyalty_tests::contract::cashback::memory);
    }

    mod challenges {
        loyalty_tests::challenge_store_contract!(loyalty_tests::contract::challenges::memory);

        #[tokio::test]
        #[should_panic(expected = "already_counted")]
        async fn a_challenge_store_that_counts_a_source_twice_fails_the_contract() {
            use loyalty_tests::contract::challenges as contract;
            contract::a_source_counts_once_and_recorded_again_changes_nothing(
                contract::memory_with_bug(
                    loyalty_platform::memory::challenges::ChallengesBug::IgnoreMarkers,
                ),
            )
            .await
        }

        #[tokio::test]
        #[should_panic(expected = "not_active")]
        async fn a_challenge_store_that_ignores_standing_fails_the_contract() {
            use loyalty_tests::contract::challenges as contract;
            contract::a_blocked_participant_counts_nothing_and_after_an_unblock_reaching_the_target_pays(
                contract::memory_with_bug(
                    loyalty_platform::memory::challenges::ChallengesBug::IgnoreStanding,
                ),
            )
            .await
        }
    }

    mod settings {
        loyalty_tests::earning_settings_contract!(loyalty_tests::contract::settings::memory);
    }

    mod answers {
        loyalty_tests::answer_store_contract!(loyalty_tests::contract::answers::memory);
    }

    mod actions {
        loyalty_tests::action_store_contract!(loyalty_tests::contract::actions::memory);
    }

    mod sellin {
        loyalty_tests::sell_in_store_contract!(loyalty_tests::contract::sellin::memory);

        #[tokio::test]
        #[should_panic(expected = "left == right")]
        async fn a_sell_in_store_that_ignores_fingerprints_fails_the_contract() {
            loyalty_tests::contract::sellin::a_line_with_other_content_is_changed_and_writes_nothing(
                loyalty_tests::contract::sellin::memory_with_bug(
                    loyalty_platform::memory::sellin::SellInBug::IgnoreFingerprint,
                ),
            )
            .await
        }

        #[tokio::test]
        #[should_panic(expected = "left == right")]
        async fn a_sell_in_store_that_ignores_standing_fails_the_contract() {
            loyalty_tests::contract::sellin::a_line_of_a_blocked_or_unknown_participant_writes_nothing_and_is_reported(
                loyalty_tests::contract::sellin::memory_with_bug(
                    loyalty_platform::memory::sellin::SellInBug::IgnoreStanding,
                ),
            )
            .await
        }
    }

    mod claims {
        loyalty_tests::claim_store_contract!(loyalty_tests::contract::claims::memory);
    }

    mod participants {
        loyalty_tests::participant_store_contract!(loyalty_tests::contract::participants::memory);
    }

    mod passcodes {
        loyalty_tests::passcodes_contract!(loyalty_tests::contract::participants::memory);
    }

    mod reviews {
        loyalty_tests::review_store_contract!(loyalty_tests::contract::reviews::memory);
    }

    mod batches {
        loyalty_tests::batch_store_contract!(loyalty_tests::contract::batches::memory_batches);
        loyalty_tests::job_queue_contract!(loyalty_tests::contract::batches::memory_jobs);
        loyalty_tests::exports_contract!(loyalty_tests::contract::batches::memory_exports);

        use loyalty_platform::memory::batches::BatchesBug;
        use loyalty_tests::contract::batches::{self as contract, memory_batches_with_bug};

        #[tokio::test]
        #[should_panic(expected = "the key is taken")]
        async fn a_batch_store_that_ignores_answers_fails_the_contract() {
            contract::an_answer_written_with_its_batch_holds_its_key(memory_batches_with_bug(
                BatchesBug::IgnoreAnswers,
            ))
            .await
        }

        #[tokio::test]
        #[should_panic(expected = "the second flip is a no-op")]
        async fn a_batch_store_that_flips_ready_twice_fails_the_contract() {
            contract::a_batch_becomes_ready_once_when_every_chunk_is_marked(
                memory_batches_with_bug(BatchesBug::ReadyEveryCall),
            )
            .await
        }
    }

    mod ledger_reader {
        loyalty_tests::ledger_reader_contract!(loyalty_tests::contract::ledger_reader::memory);
    }

    /// The cashback contract is not vacuous either.
    mod cashback_planted_bugs {
        use loyalty_platform::memory::cashback::PlantedBug;
        use loyalty_tests::contract::cashback::{self, memory_with_bug};

        #[tokio::test]
        #[should_panic(expected = "CapMovedTo")]
        async fn a_store_that_ignores_the_cap_fails_the_contract() {
            cashback::a_cap_without_the_room_is_refused_with_the_counter_and_writes_nothing(
                memory_with_bug(PlantedBug::IgnoreCap),
            )
            .await
        }

        #[tokio::test]
        #[should_panic(expected = "EventSeen")]
        async fn a_store_that_applies_replays_again_fails_the_contract() {
            cashback::a_created_order_commits_every_write_once_and_a_replay_is_refused_with_the_first_result(
                memory_with_bug(PlantedBug::ForgetReplays),
            )
            .await
        }
    }

    /// The contract is not vacuous: a memory adapter with a planted bug fails it.
    mod planted_bugs {
        use loyalty_platform::memory::claims::PlantedBug;
        use loyalty_tests::contract::claims::{self, memory_with_bug};

        #[tokio::test]
        #[should_panic(expected = "left == right")]
        async fn an_action_store_that_ignores_limits_fails_the_contract() {
            loyalty_tests::contract::actions::a_used_up_limit_is_refused_with_its_count_and_writes_nothing(
                loyalty_tests::contract::actions::memory_with_bug(
                    loyalty_platform::memory::actions::ActionsBug::IgnoreLimits,
                ),
            )
            .await
        }

        #[tokio::test]
        #[should_panic(expected = "BudgetExhausted")]
        async fn an_action_store_that_ignores_budgets_fails_the_contract() {
            loyalty_tests::contract::actions::a_credit_over_its_rules_budget_is_refused_and_writes_nothing(
                loyalty_tests::contract::actions::memory_with_bug(
                    loyalty_platform::memory::actions::ActionsBug::IgnoreBudgets,
                ),
            )
            .await
        }

        #[tokio::test]
        #[should_panic(expected = "left == right")]
        async fn a_store_that_credits_twice_fails_the_contract() {
            claims::a_claim_commits_exactly_once(memory_with_bug(PlantedBug::CreditTwice)).await
        }

        #[tokio::test]
        #[should_panic(expected = "left == right")]
        async fn a_store_that_lets_a_claimed_code_be_claimed_again_fails_the_contract() {
            claims::a_second_claim_of_the_same_code_is_refused_with_who_claimed_it(memory_with_bug(
                PlantedBug::ReclaimableCodes,
            ))
            .await
        }

        #[tokio::test]
        #[should_panic(expected = "left == right")]
        async fn a_store_that_lets_two_accounts_share_a_phone_fails_the_contract() {
            use loyalty_platform::memory::participants::PlantedBug;
            use loyalty_tests::contract::participants as contract;
            contract::sixteen_concurrent_registrations_with_one_phone_create_exactly_one_account(
                contract::memory_with_bug(PlantedBug::PhonesNotUnique),
            )
            .await
        }
    }
}
