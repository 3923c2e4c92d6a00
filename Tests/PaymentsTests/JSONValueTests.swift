import Contract
import Foundation
import Testing

/// `JSONValue` tries the likely kinds first (each miss is a thrown error); the order must change
/// the cost only, never the value.
@Suite struct JSONValueTests {
    /// The decoding order before it was tuned for cost: the reference the tuned order must agree with.
    enum Reference: Decodable, Equatable {
        case null, bool(Bool), integer(Int64), unsignedInteger(UInt64), number(Double), string(String)
        case array([Reference]), object([String: Reference])

        init(from decoder: any Decoder) throws {
            let container = try decoder.singleValueContainer()
            if container.decodeNil() { self = .null }
            else if let value = try? container.decode(Bool.self) { self = .bool(value) }
            else if let value = try? container.decode(Int64.self) { self = .integer(value) }
            else if let value = try? container.decode(UInt64.self) { self = .unsignedInteger(value) }
            else if let value = try? container.decode(Double.self) { self = .number(value) }
            else if let value = try? container.decode(String.self) { self = .string(value) }
            else if let value = try? container.decode([Reference].self) { self = .array(value) }
            else { self = .object(try container.decode([String: Reference].self)) }
        }

        var value: JSONValue {
            switch self {
            case .null: .null
            case .bool(let value): .bool(value)
            case .integer(let value): .integer(value)
            case .unsignedInteger(let value): .unsignedInteger(value)
            case .number(let value): .number(value)
            case .string(let value): .string(value)
            case .array(let values): .array(values.map(\.value))
            case .object(let members): .object(members.mapValues(\.value))
            }
        }
    }

    static func decode(_ text: String) throws -> JSONValue {
        try JSONDecoder().decode(JSONValue.self, from: Data(text.utf8))
    }

    @Test func everyKindDecodesToItsCase() throws {
        let value = try Self.decode("""
            {"s":"x","digits":"1","yes":"true","i":1,"neg":-5,"max":9223372036854775807,"u":18446744073709551615,
             "beyond":18446744073709551616,"f":1.5,"t":true,"no":false,"z":null,"a":[1,"1",true,null,[],{}],"o":{"k":{"k":[]}}}
            """)
        #expect(value == .object([
            "s": .string("x"), "digits": .string("1"), "yes": .string("true"), "i": .integer(1), "neg": .integer(-5),
            "max": .integer(.max), "u": .unsignedInteger(.max), "beyond": .number(18446744073709551616), "f": .number(1.5),
            "t": .bool(true), "no": .bool(false), "z": .null,
            "a": .array([.integer(1), .string("1"), .bool(true), .null, .array([]), .object([:])]),
            "o": .object(["k": .object(["k": .array([])])]),
        ]))
    }

    @Test(arguments: [
        "0", "-0", "1.0", "1e2", "1E-2", "0.1", "-9223372036854775808", "-9223372036854775809", "1e400",
        "\"\\u00e9\\n\"", "[[[]]]", "{\"a\":[{\"b\":1.25e1}]}", "[true,false,null]", "\"\"",
    ])
    func agreesWithTheOriginalOrder(_ text: String) throws {
        let reference = try? JSONDecoder().decode(Reference.self, from: Data(text.utf8))
        let tuned = try? Self.decode(text)
        #expect(tuned == reference?.value, "\(text)")
    }
}

/// `JSONMember` finds a top-level member's value in the text without decoding it.
@Suite struct JSONMemberTests {
    static func member(_ name: String, _ text: String) -> String? {
        let bytes = Array(text.utf8)
        return JSONMember.range(of: name, in: bytes).map { String(decoding: bytes[$0], as: UTF8.self) }
    }

    @Test func findsEachKindOfValueAtTheTopLevelOnly() {
        let text = #" { "a" : 1 , "s":"x\"}],{[y\\" ,"o":{"data":[1,{"b":"]}"}]},"data" :{"k":["v",{"w":null}],"q":"\""}, "t":true,"z":-1.5e3} "#
        #expect(Self.member("a", text) == "1")
        #expect(Self.member("s", text) == #""x\"}],{[y\\""#)
        #expect(Self.member("o", text) == #"{"data":[1,{"b":"]}"}]}"#)
        #expect(Self.member("data", text) == #"{"k":["v",{"w":null}],"q":"\""}"#, "the nested `data` inside `o` is not the member")
        #expect(Self.member("t", text) == "true")
        #expect(Self.member("z", text) == "-1.5e3")
        #expect(Self.member("missing", text) == nil)
    }

    @Test(arguments: [
        "", "[]", "\"data\"", "{", "{\"data\"", "{\"data\":", "{\"data\":{\"a\":1", "{\"data\":\"open}", "{\"x\":1 \"data\":2}",
        "{\"d\\u0061ta\":1}",
    ])
    func malformedOrUnmatchedTextGivesNil(_ text: String) {
        #expect(Self.member("data", text) == nil, "\(text)")
    }
}
