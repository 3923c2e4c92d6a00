import ConnectionThread
import CHiredis
import Foundation
import Logging

/// One hiredis connection. Not Sendable: it lives inside one `ConnectionThread` and every method
/// runs on that thread and may block (up to the configured timeouts).
final class HiredisSession {
    private let configuration: RedisConfiguration
    private let label: String
    private let logger: Logger
    private var context: UnsafeMutablePointer<redisContext>?

    init(configuration: RedisConfiguration, label: String, logger: Logger) {
        self.configuration = configuration
        self.label = label
        self.logger = logger
    }

    func close() {
        if let context { redisFree(context) }
        context = nil
    }

    /// Writes every command, then reads as many replies: one round trip (hiredis buffers the
    /// writes and flushes them on the first read). Error replies stay in place as `.error`; a
    /// broken connection throws (`isConnection`) and is replaced on the next call, never retried here.
    func pipeline(_ commands: [[[UInt8]]]) throws -> [RedisValue] {
        let context = try usableContext()
        for arguments in commands {
            let status = withArgv(arguments) { argc, argv, lengths in
                redisAppendCommandArgv(context, argc, argv, lengths)
            }
            guard status == REDIS_OK else { throw connectionError(context) }
        }
        var values: [RedisValue] = []
        values.reserveCapacity(commands.count)
        for _ in commands {
            var reply: UnsafeMutableRawPointer?
            guard redisGetReply(context, &reply) == REDIS_OK, let reply else { throw connectionError(context) }
            values.append(Self.value(reply.assumingMemoryBound(to: redisReply.self)))
            freeReplyObject(reply)
        }
        return values
    }

    // MARK: connection

    /// The current context, or a new one when there is none, hiredis marked it failed, or the
    /// server closed it while idle (detected without blocking, so that the first command after a
    /// server restart or an idle-timeout kill does not fail needlessly).
    private func usableContext() throws -> UnsafeMutablePointer<redisContext> {
        if let context {
            if context.pointee.err == 0 && !Self.peerClosedWhileIdle(context.pointee.fd) { return context }
            logger.info("redis connection broken; reconnecting", metadata: [
                "connection": "\(label)", "error": "\(Self.errorText(context))",
            ])
            close()
        }
        let context = try connect()
        self.context = context
        return context
    }

    private func connect() throws -> UnsafeMutablePointer<redisContext> {
        guard let context = redisConnectWithTimeout(configuration.host, Int32(configuration.port),
                                                    Self.timeval(seconds: configuration.connectTimeout)) else {
            throw RedisError(message: "redis connect: out of memory", isConnection: true)
        }
        guard context.pointee.err == 0 else {
            let message = Self.errorText(context)
            redisFree(context)
            throw RedisError(message: "redis connect to \(configuration.host):\(configuration.port) failed: \(message)",
                             isConnection: true)
        }
        if let seconds = configuration.commandTimeout {
            _ = redisSetTimeout(context, Self.timeval(seconds: seconds))
        }
        _ = redisEnableKeepAlive(context)
        do {
            if let password = configuration.password {
                try handshake(context, (configuration.username.map { ["AUTH", $0] } ?? ["AUTH"]) + [password], "AUTH")
            }
            if configuration.database != 0 {
                try handshake(context, ["SELECT", String(configuration.database)], "SELECT")
            }
        } catch {
            redisFree(context)
            throw error
        }
        logger.debug("redis connected", metadata: ["connection": "\(label)"])
        return context
    }

    private func handshake(_ context: UnsafeMutablePointer<redisContext>, _ arguments: [String], _ what: String) throws {
        let reply = withArgv(arguments.map { Array($0.utf8) }) { argc, argv, lengths in
            redisCommandArgv(context, argc, argv, lengths)
        }
        guard let reply else { throw connectionError(context) }
        defer { freeReplyObject(reply) }
        if case .error(let message) = Self.value(reply.assumingMemoryBound(to: redisReply.self)) {
            throw RedisError(message: "redis \(what) failed: \(message)", isConnection: true)
        }
    }

    private func connectionError(_ context: UnsafeMutablePointer<redisContext>) -> RedisError {
        // hiredis sets err on every I/O or protocol failure and the context is unusable after it.
        RedisError(message: "redis connection failed: \(Self.errorText(context))", isConnection: true)
    }

    private static func peerClosedWhileIdle(_ fd: Int32) -> Bool {
        guard fd >= 0 else { return true }
        // Between commands nothing may arrive (no pub/sub here), so readable = EOF or reset.
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        return poll(&descriptor, 1, 0) > 0
    }

    private static func errorText(_ context: UnsafeMutablePointer<redisContext>) -> String {
        let text = withUnsafeBytes(of: context.pointee.errstr) { raw in
            String(decoding: raw.prefix { $0 != 0 }, as: UTF8.self)
        }
        if !text.isEmpty { return text }
        return context.pointee.err == 0 ? "closed by peer" : "error \(context.pointee.err)"
    }

    private static func timeval(seconds: Double) -> Glibc.timeval {
        let whole = seconds.rounded(.down)
        return Glibc.timeval(tv_sec: Int(whole), tv_usec: Int((seconds - whole) * 1_000_000))
    }

    // MARK: replies

    static func value(_ reply: UnsafeMutablePointer<redisReply>) -> RedisValue {
        let reply = reply.pointee
        switch reply.type {
        case REDIS_REPLY_STRING:
            return .bulk(bytes(reply.str, reply.len))
        case REDIS_REPLY_STATUS:
            return .status(String(decoding: bytes(reply.str, reply.len), as: UTF8.self))
        case REDIS_REPLY_ERROR:
            return .error(String(decoding: bytes(reply.str, reply.len), as: UTF8.self))
        case REDIS_REPLY_INTEGER:
            return .integer(reply.integer)
        case REDIS_REPLY_ARRAY:
            guard let elements = reply.element else { return .array([]) }
            return .array((0..<reply.elements).map { index in
                elements[index].map(value) ?? .null
            })
        default:  // REDIS_REPLY_NIL
            return .null
        }
    }

    private static func bytes(_ pointer: UnsafeMutablePointer<CChar>?, _ length: Int) -> [UInt8] {
        guard let pointer, length > 0 else { return [] }
        return Array(UnsafeRawBufferPointer(start: pointer, count: length))
    }
}

/// Calls `body` with hiredis' argv form of `arguments`: pointers and lengths, so bytes may
/// include NUL. All arguments are copied into one buffer that lives for the duration of the call.
private func withArgv<R>(
    _ arguments: [[UInt8]],
    _ body: (Int32, UnsafeMutablePointer<UnsafePointer<CChar>?>, UnsafePointer<Int>) -> R
) -> R {
    let total = arguments.reduce(0) { $0 + $1.count }
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: max(total, 1), alignment: 1)
    defer { buffer.deallocate() }
    var pointers: [UnsafePointer<CChar>?] = []
    var lengths: [Int] = []
    pointers.reserveCapacity(arguments.count)
    lengths.reserveCapacity(arguments.count)
    var offset = 0
    for argument in arguments {
        let slice = UnsafeMutableRawBufferPointer(rebasing: buffer[offset..<offset + argument.count])
        slice.copyBytes(from: argument)
        pointers.append(UnsafePointer(buffer.baseAddress!.advanced(by: offset).assumingMemoryBound(to: CChar.self)))
        lengths.append(argument.count)
        offset += argument.count
    }
    return pointers.withUnsafeMutableBufferPointer { argv in
        lengths.withUnsafeBufferPointer { lengthBuffer in
            body(Int32(arguments.count), argv.baseAddress!, lengthBuffer.baseAddress!)
        }
    }
}
