//! Named M-Pesa payloads for tests and local experiments: the API document's examples and real variants.

use serde_json::{json, Value};

use crate::callback::{CallbackType, Status};
use crate::providers::fixtures::Scenario;

/// M-Pesa callback payloads, one constructor per scenario.
pub struct MpesaCallbackFixtures;

impl MpesaCallbackFixtures {
    /// The API document's STK Push success.
    pub fn stk_push_success() -> Value {
        Self::stk_push_success_for("ws_CO_191220191020363925", "NLJ7RT61SV")
    }

    pub fn stk_push_success_for(checkout_request_id: &str, receipt: &str) -> Value {
        // Built from text so that `1000.00` keeps its exact form (a Rust float literal would print `1000.0`).
        let mut payload: Value = serde_json::from_str(
            r#"{"Body": {"stkCallback": {
                "MerchantRequestID": "29115-34620561-1",
                "CheckoutRequestID": "",
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "CallbackMetadata": {"Item": [
                    {"Name": "Amount", "Value": 1000.00},
                    {"Name": "MpesaReceiptNumber", "Value": ""},
                    {"Name": "TransactionDate", "Value": 20191219102115},
                    {"Name": "PhoneNumber", "Value": 254708374149}
                ]}
            }}}"#,
        )
        .expect("fixture is valid JSON");
        let stk = &mut payload["Body"]["stkCallback"];
        stk["CheckoutRequestID"] = json!(checkout_request_id);
        stk["CallbackMetadata"]["Item"][1]["Value"] = json!(receipt);
        payload
    }

    /// A real failed STK result: no `CallbackMetadata` at all.
    pub fn stk_push_failed(checkout_request_id: &str, code: u32, description: &str) -> Value {
        json!({"Body": {"stkCallback": {
            "MerchantRequestID": "29115-34620561-1",
            "CheckoutRequestID": checkout_request_id,
            "ResultCode": code,
            "ResultDesc": description
        }}})
    }

    pub fn stk_push_cancelled() -> Value {
        Self::stk_push_failed("ws_CO_cancelled_1", 1032, "Request cancelled by user")
    }

    pub fn stk_push_insufficient_funds() -> Value {
        Self::stk_push_failed(
            "ws_CO_funds_1",
            1,
            "The balance is insufficient for the transaction",
        )
    }

    pub fn stk_push_timeout() -> Value {
        Self::stk_push_failed("ws_CO_timeout_1", 1037, "DS timeout user cannot be reached")
    }

    /// Observed variant: values as strings, `ResultCode` as a string, a `Balance` item with no `Value`.
    pub fn stk_push_success_string_values() -> Value {
        json!({"Body": {"stkCallback": {
            "MerchantRequestID": "1234-5678-1",
            "CheckoutRequestID": "ws_CO_strings_1",
            "ResultCode": "0",
            "ResultDesc": "The service request is processed successfully.",
            "CallbackMetadata": {"Item": [
                {"Name": "Amount", "Value": "1.00"},
                {"Name": "MpesaReceiptNumber", "Value": "QKA1B2C3D4"},
                {"Name": "Balance"},
                {"Name": "TransactionDate", "Value": "20240101120000"},
                {"Name": "PhoneNumber", "Value": "254708374149"}
            ]}
        }}})
    }

    /// Variant: `Item` as a single object instead of an array.
    pub fn stk_push_single_item() -> Value {
        json!({"Body": {"stkCallback": {
            "CheckoutRequestID": "ws_CO_single_1",
            "ResultCode": 0,
            "ResultDesc": "Success",
            "CallbackMetadata": {"Item": {"Name": "Amount", "Value": 50}}
        }}})
    }

    /// The API document's B2C result.
    pub fn b2c_result_success() -> Value {
        Self::b2c_result_success_for("AG_20191219_00004e48cf7e3533f581", "NLJ41HAY6Q")
    }

    pub fn b2c_result_success_for(conversation_id: &str, receipt: &str) -> Value {
        json!({"Result": {
            "ResultType": 0,
            "ResultCode": 0,
            "ResultDesc": "The service request is processed successfully.",
            "OriginatorConversationID": "10571-7910404-1",
            "ConversationID": conversation_id,
            "TransactionID": receipt,
            "ResultParameters": {"ResultParameter": [
                {"Key": "TransactionAmount", "Value": "5000.00"},
                {"Key": "TransactionReceipt", "Value": receipt},
                {"Key": "ReceiverPartyPublicName", "Value": "254708374149 - John Doe"},
                {"Key": "TransactionCompletedDateTime", "Value": "19.12.2019 11:45:50"},
                {"Key": "B2CUtilityAccountAvailableFunds", "Value": "10000.00"}
            ]},
            "ReferenceData": {"ReferenceItem": {"Key": "QueueTimeoutURL", "Value": "https://example.test/timeout"}}
        }})
    }

    /// Real failed B2C: a single `ResultParameter` object, a placeholder `TransactionID`, an item without `Value`.
    pub fn b2c_result_failed_single_parameter() -> Value {
        json!({"Result": {
            "ResultType": 0,
            "ResultCode": 2001,
            "ResultDesc": "The initiator information is invalid.",
            "OriginatorConversationID": "29112-34801843-1",
            "ConversationID": "AG_20191219_000041b09c22e1b1ef54",
            "TransactionID": "0000000000000000",
            "ResultParameters": {"ResultParameter": {"Key": "BOCompletedTime", "Value": 20191219113350_u64}},
            "ReferenceData": {"ReferenceItem": {"Key": "QueueTimeoutURL"}}
        }})
    }

    /// The API document's C2B confirmation.
    pub fn c2b_confirmation() -> Value {
        Self::c2b_confirmation_for("NLJ41HAY6Q")
    }

    pub fn c2b_confirmation_for(trans_id: &str) -> Value {
        json!({
            "TransactionType": "Pay Bill",
            "TransID": trans_id,
            "TransTime": "20191219104905",
            "TransAmount": "1500.00",
            "BusinessShortCode": "600000",
            "BillRefNumber": "account123",
            "MSISDN": "254708374149",
            "FirstName": "John",
            "LastName": "Doe"
        })
    }

    /// Today's C2B: `MSISDN` is a SHA-256 hex digest, `TransAmount` a number, extra fields present.
    pub fn c2b_confirmation_hashed_msisdn() -> Value {
        json!({
            "TransactionType": "Pay Bill",
            "TransID": "RKTQDM7W6S",
            "TransTime": "20231120153012",
            "TransAmount": 10,
            "BusinessShortCode": "600638",
            "BillRefNumber": "invoice-008",
            "InvoiceNumber": "",
            "OrgAccountBalance": "49197.00",
            "ThirdPartyTransID": "",
            "MSISDN": "2dc5f3cd6a1d3ce3a5b0a0c3d3f3bd1c3b8f5d3e0d3c6b0e1f2a3b4c5d6e7f80",
            "FirstName": "JOHN",
            "MiddleName": "",
            "LastName": ""
        })
    }

    /// A B2C queue timeout: the request waited too long in Safaricom's queue; the payment may still happen.
    pub fn b2c_queue_timeout() -> Value {
        json!({"Result": {
            "ResultType": 0,
            "ResultCode": "SFC_IC0003",
            "ResultDesc": "The request has timed out in the queue.",
            "OriginatorConversationID": "8521-4298025-1",
            "ConversationID": "AG_20191219_00005797af5d7d75f652",
            "TransactionID": "0000000000000000",
            "ReferenceData": {"ReferenceItem": {"Key": "QueueTimeoutURL", "Value": "https://example.test/timeout"}}
        }})
    }

    /// A B2C failure for lack of funds in the paying account.
    pub fn b2c_result_insufficient_funds() -> Value {
        json!({"Result": {
            "ResultType": 0,
            "ResultCode": 1,
            "ResultDesc": "The balance is insufficient for the transaction.",
            "OriginatorConversationID": "5118-111210482-1",
            "ConversationID": "AG_20230420_2010759fd5662ef6d054",
            "TransactionID": "RDK0000000",
            "ReferenceData": {"ReferenceItem": [{"Key": "QueueTimeoutURL", "Value": "https://example.test/timeout"}]}
        }})
    }

    /// A C2B validation request (sent before the payment, when validation is enabled for the short code).
    pub fn c2b_validation() -> Value {
        json!({
            "TransactionType": "Pay Bill",
            "TransID": "RKL51ZDR4F",
            "TransTime": "20231121121325",
            "TransAmount": "50.00",
            "BusinessShortCode": "600000",
            "BillRefNumber": "account123",
            "InvoiceNumber": "",
            "OrgAccountBalance": "",
            "ThirdPartyTransID": "",
            "MSISDN": "2547*****149",
            "FirstName": "John"
        })
    }

    /// A Transaction Status result as the current Daraja documentation prints it (numbers as numbers,
    /// `DebitPartyName` twice, a parameter without `Value`), for the query whose own `ConversationID` is
    /// `conversation_id`, reporting `status` ("Completed", "Cancelled", …) for receipt `receipt`.
    pub fn transaction_status_result_for(
        conversation_id: &str,
        status: &str,
        receipt: &str,
        amount: &str,
    ) -> Value {
        let mut payload: Value = serde_json::from_str(
            r#"{"Result": {
                "ConversationID": "",
                "OriginatorConversationID": "3213-416199-2",
                "ReferenceData": {"ReferenceItem": {"Key": "Occasion"}},
                "ResultCode": 0,
                "ResultDesc": "The service request is processed successfully.",
                "ResultParameters": {"ResultParameter": [
                    {"Key": "DebitPartyName", "Value": "600310 - Safaricom333"},
                    {"Key": "DebitPartyName", "Value": "254708374149 - John Doe"},
                    {"Key": "OriginatorConversationID", "Value": "3211-416020-3"},
                    {"Key": "InitiatedTime", "Value": "20180223054112"},
                    {"Key": "DebitAccountType", "Value": "Utility Account"},
                    {"Key": "DebitPartyCharges", "Value": "Fee For B2C Payment|KES|22.40"},
                    {"Key": "TransactionReason"},
                    {"Key": "ReasonType", "Value": "Business Payment to Customer via API"},
                    {"Key": "TransactionStatus", "Value": ""},
                    {"Key": "FinalisedTime", "Value": "20180223054112"},
                    {"Key": "Amount", "Value": ""},
                    {"Key": "ConversationID", "Value": "AG_20180223_000041b09c22e613d6c9"},
                    {"Key": "ReceiptNo", "Value": ""}
                ]},
                "ResultType": 0,
                "TransactionID": "MBN0000000"
            }}"#,
        )
        .expect("fixture is valid JSON");
        let result = &mut payload["Result"];
        result["ConversationID"] = json!(conversation_id);
        let parameters = &mut result["ResultParameters"]["ResultParameter"];
        parameters[8]["Value"] = json!(status);
        parameters[10]["Value"] = json!(amount);
        parameters[12]["Value"] = json!(receipt);
        payload
    }

    /// The older Daraja v1 form: keys with spaces, numbers for `Amount` and times.
    pub fn transaction_status_result_legacy() -> Value {
        json!({"Result": {
            "ResultType": 0,
            "ResultCode": 0,
            "ResultDesc": "The service request has been accepted successfully.",
            "OriginatorConversationID": "10816-694520-2",
            "ConversationID": "AG_20170727_000059c52529a8e080bd",
            "TransactionID": "LGR0000000",
            "ResultParameters": {"ResultParameter": [
                {"Key": "ReceiptNo", "Value": "LGR919G2AV"},
                {"Key": "Conversation ID", "Value": "AG_20170727_00004492b1b6d0078fbe"},
                {"Key": "FinalisedTime", "Value": 20170727101415_u64},
                {"Key": "Amount", "Value": 10},
                {"Key": "TransactionStatus", "Value": "Completed"},
                {"Key": "ReasonType", "Value": "Salary Payment via API"},
                {"Key": "TransactionReason"},
                {"Key": "DebitPartyCharges", "Value": "Fee For B2C Payment|KES|33.00"},
                {"Key": "DebitAccountType", "Value": "Utility Account"},
                {"Key": "InitiatedTime", "Value": 20170727101415_u64},
                {"Key": "Originator Conversation ID", "Value": "19455-773836-1"},
                {"Key": "CreditPartyName", "Value": "254708374149 - John Doe"},
                {"Key": "DebitPartyName", "Value": "600134 - Safaricom157"}
            ]},
            "ReferenceData": {"ReferenceItem": {"Key": "Occasion", "Value": "aaaa"}}
        }})
    }

    /// A failed query (wrong initiator): no `ResultParameters`; says nothing about the payment.
    pub fn transaction_status_query_failed() -> Value {
        json!({"Result": {
            "ResultType": 0,
            "ResultCode": 2001,
            "ResultDesc": "The initiator information is invalid.",
            "OriginatorConversationID": "7488-6256766-1",
            "ConversationID": "AG_20190104_00004ce9fc41b15aa227",
            "TransactionID": "NA43XZPDE3",
            "ReferenceData": {"ReferenceItem": {
                "Key": "QueueTimeoutURL",
                "Value": "http://internalapi.safaricom.co.ke/mpesa/b2cresults/v1/submit"
            }}
        }})
    }

    /// Every scenario, with the key and status it must be stored under.
    pub fn all() -> Vec<Scenario> {
        let scenario = Scenario::of("mpesa");
        vec![
            scenario(
                "stk_push_success",
                CallbackType::StkPush,
                Self::stk_push_success(),
                "ws_CO_191220191020363925",
                Status::Successful,
            ),
            scenario(
                "stk_push_cancelled",
                CallbackType::StkPush,
                Self::stk_push_cancelled(),
                "ws_CO_cancelled_1",
                Status::Cancelled,
            ),
            scenario(
                "stk_push_insufficient_funds",
                CallbackType::StkPush,
                Self::stk_push_insufficient_funds(),
                "ws_CO_funds_1",
                Status::Failed,
            ),
            scenario(
                "stk_push_timeout",
                CallbackType::StkPush,
                Self::stk_push_timeout(),
                "ws_CO_timeout_1",
                Status::Failed,
            ),
            scenario(
                "stk_push_expired",
                CallbackType::StkPush,
                Self::stk_push_failed("ws_CO_expired_1", 1019, "Transaction has expired"),
                "ws_CO_expired_1",
                Status::Expired,
            ),
            scenario(
                "stk_push_wrong_pin",
                CallbackType::StkPush,
                Self::stk_push_failed("ws_CO_pin_1", 2001, "The initiator information is invalid."),
                "ws_CO_pin_1",
                Status::Failed,
            ),
            scenario(
                "stk_push_unknown_code",
                CallbackType::StkPush,
                Self::stk_push_failed("ws_CO_unknown_1", 4999, "Something new"),
                "ws_CO_unknown_1",
                Status::Unknown,
            ),
            scenario(
                "stk_push_success_string_values",
                CallbackType::StkPush,
                Self::stk_push_success_string_values(),
                "ws_CO_strings_1",
                Status::Successful,
            ),
            scenario(
                "stk_push_single_item",
                CallbackType::StkPush,
                Self::stk_push_single_item(),
                "ws_CO_single_1",
                Status::Successful,
            ),
            scenario(
                "b2c_result_success",
                CallbackType::B2cResult,
                Self::b2c_result_success(),
                "AG_20191219_00004e48cf7e3533f581",
                Status::Successful,
            ),
            scenario(
                "b2c_result_failed_single_parameter",
                CallbackType::B2cResult,
                Self::b2c_result_failed_single_parameter(),
                "AG_20191219_000041b09c22e1b1ef54",
                Status::Failed,
            ),
            scenario(
                "b2c_result_insufficient_funds",
                CallbackType::B2cResult,
                Self::b2c_result_insufficient_funds(),
                "AG_20230420_2010759fd5662ef6d054",
                Status::Failed,
            ),
            scenario(
                "b2c_queue_timeout",
                CallbackType::B2cTimeout,
                Self::b2c_queue_timeout(),
                "AG_20191219_00005797af5d7d75f652",
                Status::Pending,
            ),
            scenario(
                "c2b_confirmation",
                CallbackType::C2bConfirmation,
                Self::c2b_confirmation(),
                "NLJ41HAY6Q",
                Status::Successful,
            ),
            scenario(
                "c2b_confirmation_hashed_msisdn",
                CallbackType::C2bConfirmation,
                Self::c2b_confirmation_hashed_msisdn(),
                "RKTQDM7W6S",
                Status::Successful,
            ),
            scenario(
                "c2b_validation",
                CallbackType::C2bValidation,
                Self::c2b_validation(),
                "RKL51ZDR4F",
                Status::Pending,
            ),
            scenario(
                "transaction_status_completed",
                CallbackType::TransactionStatusResult,
                Self::transaction_status_result_for(
                    "AG_20180223_0000493344ae97d86f75",
                    "Completed",
                    "MBN31H462N",
                    "300",
                ),
                "AG_20180223_0000493344ae97d86f75",
                Status::Successful,
            ),
            scenario(
                "transaction_status_legacy_keys",
                CallbackType::TransactionStatusResult,
                Self::transaction_status_result_legacy(),
                "AG_20170727_000059c52529a8e080bd",
                Status::Successful,
            ),
            scenario(
                "transaction_status_query_failed",
                CallbackType::TransactionStatusResult,
                Self::transaction_status_query_failed(),
                "AG_20190104_00004ce9fc41b15aa227",
                Status::Unknown,
            ),
        ]
    }
}
