import AMQP
import Contract
import Fleet
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Payments
import Postgres
import Store

/// The read side merchants use every day, and money out (CONTRACT §4): orders, batch queries,
/// the event log, settlements and payment exports.
extension IngressApp {
    func addMoneyOutRoutes(to router: Router<IngressContext>) {
        let api = router.group("api/v1")
        api.get("orders/:order_no") { request, context in
            try await self.getOrder(request, orderNo: try context.parameters.require("order_no"))
        }
        api.post("orders/batch") { request, _ in try await self.batch(request, field: "order_nos", find: self.findOrders) }
        api.post("payments/batch") { request, _ in try await self.batch(request, field: "payment_nos", find: self.findPayments) }
        api.get("merchant/events") { request, _ in try await self.listEvents(request) }
        api.get("merchant/settlements") { request, _ in try await self.listSettlements(request) }
        api.get("merchant/settlements/:settlement_id") { request, context in
            try await self.getSettlement(request, id: try context.parameters.require("settlement_id"))
        }
        api.get("merchant/settlements/:settlement_id/lines") { request, context in
            try await self.settlementLines(request, id: try context.parameters.require("settlement_id"))
        }
        api.post("merchant/payments/export") { request, _ in try await self.createExport(request) }
        api.get("merchant/exports/:task_id") { request, context in
            try await self.getExport(request, taskId: try context.parameters.require("task_id"))
        }
        api.get("merchant/exports/:task_id/download") { request, context in
            try await self.download(request, taskId: try context.parameters.require("task_id"))
        }
    }

    // MARK: - Orders and batch queries

    func getOrder(_ request: Request, orderNo: String) async throws -> Response {
        let merchant = try await authenticate(request)
        guard let order = try await pool.withConnection({
            try await OrderStore().load(merchantId: merchant.merchantId, orderNo: orderNo, on: $0)
        }), order.version > 0 else {
            throw Problem(.notFound, "not_found", "no order \(TextRules.forLog(orderNo, limit: 64))")
        }
        return Self.json(.ok, try CanonicalJSON.encode(order)).response
    }

    static let batchLimit = 100

    /// `{"<field>": [...]}`: at most 100 ids, duplicates answered once, one query; answers
    /// `{"data": [...], "not_found": [...]}` in the order asked. Another merchant's ids are not found.
    func batch(_ request: Request, field: String,
               find: @escaping @Sendable (String, [String]) async throws -> [(String, String)]) async throws -> Response {
        let merchant = try await authenticate(request)
        var request = request
        guard case .object(let object) = try await readJSON(&request) else {
            throw Problem.invalid(ValidationFailure([FieldError("$", "must be a JSON object")]))
        }
        var errors: [FieldError] = []
        for key in object.keys.sorted() where key != field { errors.append(FieldError(TextRules.forLog(key, limit: 40), "is not a known field")) }
        var ids: [String] = []
        switch object[field] {
        case .array(let items)?:
            if items.isEmpty { errors.append(FieldError(field, "must hold at least one id")) }
            if items.count > Self.batchLimit { errors.append(FieldError(field, "holds \(items.count) ids; at most \(Self.batchLimit)")) }
            for (index, item) in items.enumerated() where items.count <= Self.batchLimit {
                guard case .string(let id) = item, !id.isEmpty, id.count <= 64, TextRules.isPrintable(id) else {
                    errors.append(FieldError("\(field)[\(index)]", "must be 1-64 printable characters"))
                    continue
                }
                if !ids.contains(id) { ids.append(id) }
            }
        case nil, .null?:
            errors.append(FieldError(field, "is required"))
        case let other?:
            errors.append(FieldError(field, "must be an array of strings, not a \(other.typeName)"))
        }
        guard errors.isEmpty else { throw Problem.invalid(ValidationFailure(errors)) }
        let found = Dictionary(try await find(merchant.merchantId, ids), uniquingKeysWith: { first, _ in first })
        let data = ids.compactMap { found[$0] }
        let missing = ids.filter { found[$0] == nil }
        let body = "{\"data\":[" + data.joined(separator: ",") + "],\"not_found\":" + (try CanonicalJSON.encode(missing)) + "}"
        return Self.json(.ok, body).response
    }

    @Sendable func findOrders(merchantId: String, ids: [String]) async throws -> [(String, String)] {
        try await pool.withConnection { try await OrderStore().find(merchantId: merchantId, orderNos: ids, on: $0) }
            .filter { $0.version > 0 }
            .map { ($0.orderNo, try CanonicalJSON.encode($0)) }
    }

    @Sendable func findPayments(merchantId: String, ids: [String]) async throws -> [(String, String)] {
        try await pool.withConnection { try await self.payments.find(paymentNos: ids, merchantId: merchantId, on: $0) }
            .map { ($0.paymentNo, try CanonicalJSON.encode($0)) }
    }

    // MARK: - The event log

    /// `?type=&since=&until=&limit=&cursor=`: the merchant's events as published, oldest first.
    func listEvents(_ request: Request) async throws -> Response {
        let merchant = try await authenticate(request)
        var query = ListQuery(request)
        let type = query.text("type", maxLength: 64)
        let since = query.time("since"), until = query.time("until")
        let cursor = query.cursor { EventLogStore.cursorId($0) }
        try query.check()
        let page = try await pool.withConnection {
            try await EventLogStore().list(merchantId: merchant.merchantId, type: type, since: since, until: until, after: cursor,
                                           limit: query.limit, on: $0)
        }
        return Self.list(page.items, next: page.nextCursor)
    }

    // MARK: - Settlements

    /// `?from=&to=&currency=&limit=&cursor=`: newest day first.
    func listSettlements(_ request: Request) async throws -> Response {
        let merchant = try await authenticate(request)
        var query = ListQuery(request)
        let from = query.day("from"), to = query.day("to")
        let currency = query.currency("currency")
        let cursor = query.cursor { $0 }
        try query.check()
        let page: Page<Settlement>
        do {
            page = try await pool.withConnection {
                try await SettlementStore().list(merchantId: merchant.merchantId, from: from, to: to, currency: currency?.rawValue,
                                                 cursor: cursor, limit: query.limit, on: $0)
            }
        } catch is SettlementStore.InvalidCursor {
            throw Problem.invalid(ValidationFailure([FieldError("cursor", "is not a cursor this list handed out")]))
        }
        return Self.list(try page.items.map { try CanonicalJSON.encode($0) }, next: page.nextCursor)
    }

    func getSettlement(_ request: Request, id: String) async throws -> Response {
        let merchant = try await authenticate(request)
        return Self.json(.ok, try CanonicalJSON.encode(try await settlement(id, of: merchant.merchantId))).response
    }

    /// The payments and refunds a settlement holds, oldest first, paginated.
    func settlementLines(_ request: Request, id: String) async throws -> Response {
        let merchant = try await authenticate(request)
        var query = ListQuery(request)
        let cursor = query.cursor { $0 }
        try query.check()
        let settlement = try await settlement(id, of: merchant.merchantId)
        let page: Page<SettlementLine>
        do {
            page = try await pool.withConnection {
                try await SettlementStore().lines(settlementId: settlement.settlementId, cursor: cursor, limit: query.limit, on: $0)
            }
        } catch is SettlementStore.InvalidCursor {
            throw Problem.invalid(ValidationFailure([FieldError("cursor", "is not a cursor this list handed out")]))
        }
        return Self.list(try page.items.map { try CanonicalJSON.encode($0) }, next: page.nextCursor)
    }

    func settlement(_ id: String, of merchantId: String) async throws -> Settlement {
        guard let settlement = try await pool.withConnection({
            try await SettlementStore().find(settlementId: id, merchantId: merchantId, on: $0)
        }) else {
            throw Problem(.notFound, "not_found", "no settlement \(TextRules.forLog(id, limit: 64))")
        }
        return settlement
    }

    // MARK: - Exports

    /// `{"start_date", "end_date", "format": "csv"}` -> 202 `{"task_id"}`. The task is recorded,
    /// then `export.run` is published with a confirm; a retry under the same Idempotency-Key names
    /// the same task (and publishes it again if the first publish was not confirmed).
    func createExport(_ request: Request) async throws -> Response {
        let merchant = try await authenticate(request)
        var request = request
        let json = try await readJSON(&request)
        let key = try idempotencyKey(request)
        let export: ExportRequest
        switch ExportRequest.parse(json) {
        case .success(let value): export = value
        case .failure(let failure): throw Problem.invalid(failure)
        }
        let route = "POST /api/v1/merchant/payments/export"
        let traceparent = Self.traceparent(request)
        let requestHash = MessageIds.sha256Hex("\(route)|\(try CanonicalJSON.encode(export))")
        return try await idempotent(merchantId: merchant.merchantId, key: key, requestHash: requestHash) {
            let taskId = ExportTask.id(merchantId: merchant.merchantId, idempotencyKey: key)
            let task = try await self.pool.withConnection {
                try await ExportStore().create(taskId: taskId, merchantId: merchant.merchantId, request: export, at: Date(), on: $0)
            }
            let command = CloudEvent(id: MessageIds.newCommandId(), type: "export.run", source: "/payfleet/ingress", time: Timestamp.format(Date()),
                                     merchantId: merchant.merchantId, idempotencyKey: "export:\(taskId)",
                                     traceparent: traceparent, data: ExportRunRequest(taskId: taskId))
            let accepted = Self.json(.accepted, try CanonicalJSON.encode(["task_id": task.taskId, "status": task.status.rawValue]),
                                     location: "/api/v1/merchant/exports/\(taskId)")
            return try await self.send(command, respondAsync: true, accepted: accepted)
        }
    }

    func getExport(_ request: Request, taskId: String) async throws -> Response {
        let merchant = try await authenticate(request)
        return Self.json(.ok, try CanonicalJSON.encode(try await exportTask(taskId, of: merchant.merchantId).task)).response
    }

    /// The CSV, streamed chunk by chunk from the export storage: 409 until it is completed, 410
    /// once expired.
    func download(_ request: Request, taskId: String) async throws -> Response {
        let merchant = try await authenticate(request)
        let stored = try await exportTask(taskId, of: merchant.merchantId)
        switch stored.task.status {
        case .completed: break
        case .expired: throw Problem(.gone, "export_expired", "export \(taskId) expired and its file was removed; request a new export")
        case .failed: throw Problem(.conflict, "export_failed", "export \(taskId) failed: \(stored.task.failureMessage ?? "")")
        case .pending, .processing:
            throw Problem(.conflict, "export_not_ready", "export \(taskId) is \(stored.task.status.rawValue) (\(stored.task.progress)%); try again later")
        }
        let storage = PostgresExportStorage(pool: pool)
        let chunks = stored.nextSeq
        var headers = HTTPFields()
        headers[.contentType] = "text/csv; charset=utf-8"
        headers[.contentDisposition] = "attachment; filename=\"payments_\(stored.task.startDate)_\(stored.task.endDate)_\(taskId).csv\""
        headers[.contentLength] = String(stored.bytes)
        if let sha = stored.task.sha256 { headers[HTTPField.Name("X-Content-SHA256")!] = sha }
        return Response(status: .ok, headers: headers, body: ResponseBody(contentLength: Int(stored.bytes)) { writer in
            for seq in 0..<chunks {
                try await writer.write(ByteBuffer(bytes: try await storage.read(taskId: taskId, seq: seq)))
            }
            try await writer.finish(nil)
        })
    }

    func exportTask(_ taskId: String, of merchantId: String) async throws -> StoredExport {
        guard let stored = try await pool.withConnection({ try await ExportStore().load(taskId: taskId, merchantId: merchantId, on: $0) }) else {
            throw Problem(.notFound, "not_found", "no export task \(TextRules.forLog(taskId, limit: 64))")
        }
        return stored
    }

    // MARK: - Lists

    /// `{"data": [...], "next_cursor": ...}` from items already encoded.
    static func list(_ items: [String], next: String?) -> Response {
        let cursor = next.map { (try? CanonicalJSON.encode($0)) ?? "null" } ?? "null"
        return json(.ok, "{\"data\":[" + items.joined(separator: ",") + "],\"next_cursor\":" + cursor + "}").response
    }
}

/// A list route's query string: `limit` (1-100, default 20), `cursor`, and filters, with one
/// field error per bad parameter.
struct ListQuery {
    let parameters: [String: String]
    var errors: [FieldError] = []
    var limit = 20

    init(_ request: Request) {
        var parameters: [String: String] = [:]
        for (key, value) in request.uri.queryParameters { parameters[String(key)] = String(value) }
        self.parameters = parameters
        if let text = parameters["limit"] {
            if let value = Int(text), (1...100).contains(value) { limit = value } else { errors.append(FieldError("limit", "must be 1...100")) }
        }
    }

    mutating func text(_ name: String, maxLength: Int) -> String? {
        guard let text = parameters[name] else { return nil }
        guard !text.isEmpty, text.count <= maxLength, TextRules.isPrintable(text) else {
            errors.append(FieldError(name, "must be 1-\(maxLength) printable characters"))
            return nil
        }
        return text
    }

    mutating func time(_ name: String) -> Date? {
        guard let text = parameters[name] else { return nil }
        guard text.count <= 40, let date = Timestamp.parse(text) else {
            errors.append(FieldError(name, "must be an RFC 3339 time such as 2026-12-01T00:00:00Z"))
            return nil
        }
        return date
    }

    mutating func day(_ name: String) -> UTCDay? {
        guard let text = parameters[name] else { return nil }
        guard let day = UTCDay(text) else {
            errors.append(FieldError(name, "must be a date YYYY-MM-DD"))
            return nil
        }
        return day
    }

    mutating func currency(_ name: String) -> Currency? {
        guard let text = parameters[name] else { return nil }
        guard let currency = Currency(rawValue: text) else {
            errors.append(FieldError(name, "must be one of \(Currency.allCases.map(\.rawValue).joined(separator: ", "))"))
            return nil
        }
        return currency
    }

    mutating func cursor<T>(_ parse: (String) -> T?) -> T? {
        guard let text = parameters["cursor"] else { return nil }
        guard text.count <= 200, let value = parse(text) else {
            errors.append(FieldError("cursor", "is not a cursor this list handed out"))
            return nil
        }
        return value
    }

    func check() throws {
        guard errors.isEmpty else { throw Problem.invalid(ValidationFailure(errors)) }
    }
}
