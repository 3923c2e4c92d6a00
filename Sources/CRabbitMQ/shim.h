// The whole of rabbitmq-c that Swift sees. Only the AMQP module imports this.
#ifndef PAYFLEET_CRABBITMQ_SHIM_H
#define PAYFLEET_CRABBITMQ_SHIM_H

// rabbitmq-c 0.11 (Debian 12) installs flat headers; 0.12+ moved them under rabbitmq-c/.
#if __has_include(<rabbitmq-c/amqp.h>)
#include <rabbitmq-c/amqp.h>
#include <rabbitmq-c/tcp_socket.h>
#else
#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>
#endif

#include <stdint.h>
#include <sys/time.h>

/// amqp_login_with_properties is C-variadic, which Swift cannot call: this fixes
/// the SASL PLAIN arguments so Swift sees an ordinary function.
static inline amqp_rpc_reply_t payfleet_amqp_login_plain(
    amqp_connection_state_t state, const char *vhost, int channel_max,
    int frame_max, int heartbeat, const amqp_table_t *client_properties,
    const char *user, const char *password) {
  return amqp_login_with_properties(state, vhost, channel_max, frame_max,
                                    heartbeat, client_properties,
                                    AMQP_SASL_METHOD_PLAIN, user, password);
}

// Method ids and property flags are macros with casts; give Swift plain constants.
static const amqp_method_number_t PAYFLEET_CONNECTION_CLOSE = AMQP_CONNECTION_CLOSE_METHOD;
static const amqp_method_number_t PAYFLEET_CONNECTION_CLOSE_OK = AMQP_CONNECTION_CLOSE_OK_METHOD;
static const amqp_method_number_t PAYFLEET_CONNECTION_BLOCKED = AMQP_CONNECTION_BLOCKED_METHOD;
static const amqp_method_number_t PAYFLEET_CONNECTION_UNBLOCKED = AMQP_CONNECTION_UNBLOCKED_METHOD;
static const amqp_method_number_t PAYFLEET_CHANNEL_CLOSE = AMQP_CHANNEL_CLOSE_METHOD;
static const amqp_method_number_t PAYFLEET_CHANNEL_CLOSE_OK = AMQP_CHANNEL_CLOSE_OK_METHOD;
static const amqp_method_number_t PAYFLEET_CHANNEL_FLOW = AMQP_CHANNEL_FLOW_METHOD;
static const amqp_method_number_t PAYFLEET_CHANNEL_FLOW_OK = AMQP_CHANNEL_FLOW_OK_METHOD;
static const amqp_method_number_t PAYFLEET_BASIC_DELIVER = AMQP_BASIC_DELIVER_METHOD;
static const amqp_method_number_t PAYFLEET_BASIC_RETURN = AMQP_BASIC_RETURN_METHOD;
static const amqp_method_number_t PAYFLEET_BASIC_ACK = AMQP_BASIC_ACK_METHOD;
static const amqp_method_number_t PAYFLEET_BASIC_NACK = AMQP_BASIC_NACK_METHOD;
static const amqp_method_number_t PAYFLEET_BASIC_CANCEL = AMQP_BASIC_CANCEL_METHOD;
static const amqp_method_number_t PAYFLEET_BASIC_GET_OK = AMQP_BASIC_GET_OK_METHOD;
static const amqp_method_number_t PAYFLEET_BASIC_GET_EMPTY = AMQP_BASIC_GET_EMPTY_METHOD;

static const amqp_flags_t PAYFLEET_FLAG_CONTENT_TYPE = AMQP_BASIC_CONTENT_TYPE_FLAG;
static const amqp_flags_t PAYFLEET_FLAG_HEADERS = AMQP_BASIC_HEADERS_FLAG;
static const amqp_flags_t PAYFLEET_FLAG_DELIVERY_MODE = AMQP_BASIC_DELIVERY_MODE_FLAG;
static const amqp_flags_t PAYFLEET_FLAG_CORRELATION_ID = AMQP_BASIC_CORRELATION_ID_FLAG;
static const amqp_flags_t PAYFLEET_FLAG_REPLY_TO = AMQP_BASIC_REPLY_TO_FLAG;
static const amqp_flags_t PAYFLEET_FLAG_EXPIRATION = AMQP_BASIC_EXPIRATION_FLAG;
static const amqp_flags_t PAYFLEET_FLAG_MESSAGE_ID = AMQP_BASIC_MESSAGE_ID_FLAG;
static const amqp_flags_t PAYFLEET_FLAG_TIMESTAMP = AMQP_BASIC_TIMESTAMP_FLAG;
static const amqp_flags_t PAYFLEET_FLAG_TYPE = AMQP_BASIC_TYPE_FLAG;
static const amqp_flags_t PAYFLEET_FLAG_APP_ID = AMQP_BASIC_APP_ID_FLAG;
static const amqp_flags_t PAYFLEET_FLAG_USER_ID = AMQP_BASIC_USER_ID_FLAG;

#endif
