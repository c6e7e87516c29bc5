// Alpine.js components for the page templates.
//
// The CSP build of Alpine (no 'unsafe-eval') parses only simple expressions in x-*
// attributes, so anything with logic lives here and the templates just name it:
// x-data="todoItem", @click="startEdit".
document.addEventListener('alpine:init', () => {
  const Alpine = window.Alpine

  // The todo page: which items the list shows (CSS reads data-filter).
  Alpine.data('todoPage', () => ({ filter: 'all' }))

  // The add form: characters left of the title's limit (the input's maxlength).
  Alpine.data('titleCounter', () => ({
    title: '',
    max: 200,
    init () {
      const input = this.$el.querySelector('input[name="title"]')
      this.title = input.value // keep what the server re-rendered after a 422
      this.max = input.maxLength > 0 ? input.maxLength : this.max
    },
    get remaining () {
      return this.max - this.title.length
    }
  }))

  // One todo: the rename-in-place toggle. A failed rename comes back with data-editing.
  Alpine.data('todoItem', () => ({
    editing: false,
    init () {
      if (this.$el.hasAttribute('data-editing')) this.startEdit()
    },
    startEdit () {
      this.editing = true
      this.$nextTick(() => {
        this.$refs.edit.focus()
        this.$refs.edit.select()
      })
    },
    cancelEdit () {
      this.editing = false
    }
  }))

  // The chat log: messages from the Server-Sent Events stream.
  Alpine.data('chatFeed', () => {
    let source = null
    return {
      messages: [],
      live: false,
      status: 'connecting…',
      init () {
        source = new EventSource('/chat/stream')
        source.addEventListener('open', () => {
          // Each (re)connection replays the recent history: start from it afresh.
          this.messages = []
          this.live = true
          this.status = 'live'
        })
        source.addEventListener('error', () => {
          this.live = false
          this.status = 'reconnecting…' // EventSource retries on its own
        })
        source.addEventListener('bye', () => {
          this.live = false
          this.status = 'server restarting…'
        })
        source.addEventListener('gap', (event) => {
          // This tab read too slowly: the server dropped messages rather than queue them.
          const missed = JSON.parse(event.data).missed
          this.status = `live (${missed} earlier messages skipped)`
        })
        source.addEventListener('message', (event) => this.receive(JSON.parse(event.data)))
      },
      destroy () {
        if (source) source.close()
      },
      receive (message) {
        if (this.messages.some((known) => known.id === message.id)) return
        const at = new Date(message.at)
        message.time = at.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })
        this.messages.push(message)
        if (this.messages.length > 100) this.messages.shift()
        this.$nextTick(() => {
          const log = this.$refs.log
          log.scrollTop = log.scrollHeight
        })
      }
    }
  })

  // The chat form: remembers the author's name in this browser.
  Alpine.data('chatForm', () => ({
    init () {
      const author = this.$el.querySelector('input[name="author"]')
      if (!author.value) author.value = window.localStorage.getItem('chat-author') || ''
    },
    remember () {
      const author = this.$el.querySelector('input[name="author"]')
      window.localStorage.setItem('chat-author', author.value)
    }
  }))
})
