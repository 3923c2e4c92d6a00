import CRabbitMQ
import Foundation

// Conversions between Swift values and rabbitmq-c structures. Internal to the
// module: nothing here is public, and every C pointer lives only as long as the
// CArena that made it.

/// Owns the C memory of the structures handed to one rabbitmq-c call.
///
/// `amqp_cstring_bytes` and friends only keep pointers, so every string, body and
/// table passed to rabbitmq-c is copied into malloc'ed memory owned by an arena;
/// the caller keeps the arena alive (`withExtendedLifetime`) across the call.
/// Used only on the connection's own thread.
final class CArena {
    private var allocations: [UnsafeMutableRawPointer] = []

    deinit {
        for pointer in allocations { free(pointer) }
    }

    private func allocate(_ size: Int) -> UnsafeMutableRawPointer {
        guard let pointer = malloc(max(size, 1)) else { fatalError("out of memory") }
        allocations.append(pointer)
        return pointer
    }

    func bytes<C: Collection>(_ value: C) -> amqp_bytes_t where C.Element == UInt8 {
        let count = value.count
        let pointer = allocate(count)
        let buffer = UnsafeMutableRawBufferPointer(start: pointer, count: count)
        buffer.copyBytes(from: value)
        return amqp_bytes_t(len: count, bytes: pointer)
    }

    func bytes(_ string: String) -> amqp_bytes_t { bytes(Array(string.utf8)) }

    /// A NUL-terminated copy, for the few calls that take `const char *`.
    func cString(_ string: String) -> UnsafePointer<CChar> {
        let utf8 = Array(string.utf8CString)
        let pointer = allocate(utf8.count).bindMemory(to: CChar.self, capacity: utf8.count)
        pointer.initialize(from: utf8, count: utf8.count)
        return UnsafePointer(pointer)
    }

    func table(_ table: AMQPTable) -> amqp_table_t {
        guard !table.isEmpty else { return amqp_table_t(num_entries: 0, entries: nil) }
        let keys = table.keys.sorted()
        let entries = allocate(MemoryLayout<amqp_table_entry_t>.stride * keys.count)
            .bindMemory(to: amqp_table_entry_t.self, capacity: keys.count)
        for (index, key) in keys.enumerated() {
            entries.advanced(by: index).initialize(to: amqp_table_entry_t(key: bytes(key), value: field(table[key]!)))
        }
        return amqp_table_t(num_entries: Int32(keys.count), entries: entries)
    }

    func field(_ value: AMQPValue) -> amqp_field_value_t {
        var field = amqp_field_value_t()
        switch value {
        case .string(let string):
            field.kind = kind(AMQP_FIELD_KIND_UTF8)
            field.value.bytes = bytes(string)
        case .int(let int):
            field.kind = kind(AMQP_FIELD_KIND_I64)
            field.value.i64 = int
        case .bool(let bool):
            field.kind = kind(AMQP_FIELD_KIND_BOOLEAN)
            field.value.boolean = bool ? 1 : 0
        case .double(let double):
            field.kind = kind(AMQP_FIELD_KIND_F64)
            field.value.f64 = double
        case .table(let nested):
            field.kind = kind(AMQP_FIELD_KIND_TABLE)
            field.value.table = table(nested)
        case .array(let values):
            field.kind = kind(AMQP_FIELD_KIND_ARRAY)
            if values.isEmpty {
                field.value.array = amqp_array_t(num_entries: 0, entries: nil)
            } else {
                let entries = allocate(MemoryLayout<amqp_field_value_t>.stride * values.count)
                    .bindMemory(to: amqp_field_value_t.self, capacity: values.count)
                for (index, element) in values.enumerated() {
                    entries.advanced(by: index).initialize(to: self.field(element))
                }
                field.value.array = amqp_array_t(num_entries: Int32(values.count), entries: entries)
            }
        case .void:
            field.kind = kind(AMQP_FIELD_KIND_VOID)
        }
        return field
    }

    func properties(_ properties: AMQPProperties) -> amqp_basic_properties_t {
        var props = amqp_basic_properties_t()
        var flags: amqp_flags_t = PAYFLEET_FLAG_DELIVERY_MODE
        props.delivery_mode = properties.persistent ? 2 : 1
        if let value = properties.contentType {
            flags |= PAYFLEET_FLAG_CONTENT_TYPE
            props.content_type = bytes(value)
        }
        if !properties.headers.isEmpty {
            flags |= PAYFLEET_FLAG_HEADERS
            props.headers = table(properties.headers)
        }
        if let value = properties.correlationId {
            flags |= PAYFLEET_FLAG_CORRELATION_ID
            props.correlation_id = bytes(value)
        }
        if let value = properties.replyTo {
            flags |= PAYFLEET_FLAG_REPLY_TO
            props.reply_to = bytes(value)
        }
        if let value = properties.expiration {
            flags |= PAYFLEET_FLAG_EXPIRATION
            props.expiration = bytes(value)
        }
        if let value = properties.messageId {
            flags |= PAYFLEET_FLAG_MESSAGE_ID
            props.message_id = bytes(value)
        }
        if let value = properties.timestamp {
            flags |= PAYFLEET_FLAG_TIMESTAMP
            props.timestamp = UInt64(max(0, value.timeIntervalSince1970.rounded(.down)))
        }
        if let value = properties.type {
            flags |= PAYFLEET_FLAG_TYPE
            props.type = bytes(value)
        }
        if let value = properties.appId {
            flags |= PAYFLEET_FLAG_APP_ID
            props.app_id = bytes(value)
        }
        if let value = properties.userId {
            flags |= PAYFLEET_FLAG_USER_ID
            props.user_id = bytes(value)
        }
        props._flags = flags
        return props
    }
}

private func kind(_ kind: amqp_field_value_kind_t) -> UInt8 { UInt8(truncatingIfNeeded: kind.rawValue) }

// MARK: - Reading C structures (copies everything: the C memory is released soon after)

extension String {
    init(amqpBytes bytes: amqp_bytes_t) {
        guard bytes.len > 0, let base = bytes.bytes else {
            self = ""
            return
        }
        self = String(decoding: UnsafeRawBufferPointer(start: base, count: bytes.len), as: UTF8.self)
    }
}

extension Array where Element == UInt8 {
    init(amqpBytes bytes: amqp_bytes_t) {
        guard bytes.len > 0, let base = bytes.bytes else {
            self = []
            return
        }
        self = Array(UnsafeRawBufferPointer(start: base, count: bytes.len))
    }
}

func decodeTable(_ table: amqp_table_t) -> AMQPTable {
    var result: AMQPTable = [:]
    guard table.num_entries > 0, let entries = table.entries else { return result }
    for index in 0..<Int(table.num_entries) {
        let entry = entries[index]
        result[String(amqpBytes: entry.key)] = decodeField(entry.value)
    }
    return result
}

func decodeField(_ field: amqp_field_value_t) -> AMQPValue {
    switch UInt32(field.kind) {
    case AMQP_FIELD_KIND_BOOLEAN.rawValue: return .bool(field.value.boolean != 0)
    case AMQP_FIELD_KIND_I8.rawValue: return .int(Int64(field.value.i8))
    case AMQP_FIELD_KIND_U8.rawValue: return .int(Int64(field.value.u8))
    case AMQP_FIELD_KIND_I16.rawValue: return .int(Int64(field.value.i16))
    case AMQP_FIELD_KIND_U16.rawValue: return .int(Int64(field.value.u16))
    case AMQP_FIELD_KIND_I32.rawValue: return .int(Int64(field.value.i32))
    case AMQP_FIELD_KIND_U32.rawValue: return .int(Int64(field.value.u32))
    case AMQP_FIELD_KIND_I64.rawValue: return .int(field.value.i64)
    case AMQP_FIELD_KIND_U64.rawValue, AMQP_FIELD_KIND_TIMESTAMP.rawValue:
        return .int(Int64(clamping: field.value.u64))
    case AMQP_FIELD_KIND_F32.rawValue: return .double(Double(field.value.f32))
    case AMQP_FIELD_KIND_F64.rawValue: return .double(field.value.f64)
    case AMQP_FIELD_KIND_DECIMAL.rawValue:
        let decimal = field.value.decimal
        var value = Double(Int32(bitPattern: decimal.value))
        for _ in 0..<decimal.decimals { value /= 10 }
        return .double(value)
    case AMQP_FIELD_KIND_UTF8.rawValue, AMQP_FIELD_KIND_BYTES.rawValue:
        return .string(String(amqpBytes: field.value.bytes))
    case AMQP_FIELD_KIND_TABLE.rawValue: return .table(decodeTable(field.value.table))
    case AMQP_FIELD_KIND_ARRAY.rawValue:
        let array = field.value.array
        guard array.num_entries > 0, let entries = array.entries else { return .array([]) }
        return .array((0..<Int(array.num_entries)).map { decodeField(entries[$0]) })
    default: return .void
    }
}

func decodeProperties(_ props: amqp_basic_properties_t) -> AMQPProperties {
    let flags = props._flags
    func string(_ flag: amqp_flags_t, _ bytes: amqp_bytes_t) -> String? {
        flags & flag != 0 ? String(amqpBytes: bytes) : nil
    }
    return AMQPProperties(
        contentType: string(PAYFLEET_FLAG_CONTENT_TYPE, props.content_type),
        persistent: flags & PAYFLEET_FLAG_DELIVERY_MODE != 0 && props.delivery_mode == 2,
        messageId: string(PAYFLEET_FLAG_MESSAGE_ID, props.message_id),
        type: string(PAYFLEET_FLAG_TYPE, props.type),
        correlationId: string(PAYFLEET_FLAG_CORRELATION_ID, props.correlation_id),
        replyTo: string(PAYFLEET_FLAG_REPLY_TO, props.reply_to),
        timestamp: flags & PAYFLEET_FLAG_TIMESTAMP != 0
            ? Date(timeIntervalSince1970: TimeInterval(props.timestamp)) : nil,
        expiration: string(PAYFLEET_FLAG_EXPIRATION, props.expiration),
        appId: string(PAYFLEET_FLAG_APP_ID, props.app_id),
        userId: string(PAYFLEET_FLAG_USER_ID, props.user_id),
        headers: flags & PAYFLEET_FLAG_HEADERS != 0 ? decodeTable(props.headers) : [:])
}

/// A readable message for a rabbitmq-c status code.
func statusText(_ status: Int32) -> String {
    guard let text = amqp_error_string2(status) else { return "status \(status)" }
    return String(cString: text)
}
